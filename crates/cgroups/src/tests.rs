//! Unit tests against a fake cgroup tree in a tempdir, plus tests on the machine's real
//! cgroups that create and remove their own cgroup under `peapod-test-*`.

use super::*;
use std::process::Command;

fn fake_type(root: &Path, v2: bool) -> impl Fn(&Path) -> io::Result<FsType> + '_ {
    move |p: &Path| {
        if p == root {
            Ok(if v2 {
                CGROUP2_SUPER_MAGIC
            } else {
                FsType(0x0102_1994)
            })
        } else if p.file_name().is_some_and(|n| n == "unified") {
            Ok(CGROUP2_SUPER_MAGIC)
        } else {
            Ok(CGROUP_SUPER_MAGIC)
        }
    }
}

#[test]
fn detects_v1_hybrid_ignoring_unified_and_comount_symlinks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    for d in ["cpu,cpuacct", "memory", "pids", "unified"] {
        fs::create_dir(root.join(d)).expect("mkdir");
    }
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).expect("symlink");
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpuacct")).expect("symlink");
    let h = Hierarchy::detect_with(root, fake_type(root, false)).expect("detect");
    assert_eq!(h.version(), Version::V1);
    let names: Vec<_> = h.mounts().iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["cpu,cpuacct", "memory", "pids"]);
}

#[test]
fn detects_v2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let h = Hierarchy::detect_with(tmp.path(), fake_type(tmp.path(), true)).expect("detect");
    assert_eq!(h.version(), Version::V2);
}

#[test]
fn no_hierarchy_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = Hierarchy::detect_with(tmp.path(), fake_type(tmp.path(), false)).expect_err("empty");
    assert!(matches!(err, CgroupError::NoHierarchy { .. }));
}

#[test]
fn fake_v1_create_apply_stats_remove() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let mounts: Vec<_> = ["cpu,cpuacct", "memory", "pids", "cpuset"]
        .iter()
        .map(|n| Mounted {
            name: n.to_string(),
            path: root.join(n),
        })
        .collect();
    for m in &mounts {
        fs::create_dir(&m.path).expect("mkdir");
    }
    fs::write(root.join("cpuset/cpuset.cpus"), "0-1\n").expect("write");
    let h = Hierarchy::v1(mounts);
    let cg = h.cgroup(Path::new("peapod/../pod1/c1"));
    assert_eq!(cg.relative(), Path::new("peapod/pod1/c1"));
    cg.create().expect("create");
    cg.create().expect("create again is fine");
    assert!(cg.exists());
    // The fake kernel files a real cgroupfs would have.
    let mem = root.join("memory/peapod/pod1/c1");
    fs::write(mem.join("memory.limit_in_bytes"), "").expect("write");
    fs::write(
        mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    )
    .expect("write");
    fs::write(mem.join("memory.usage_in_bytes"), "4096\n").expect("write");
    fs::write(root.join("pids/peapod/pod1/c1/pids.max"), "").expect("write");
    cg.apply(&Resources {
        memory_limit_bytes: Some(1 << 20),
        pids_limit: Some(10),
        ..Default::default()
    })
    .expect("apply");
    assert_eq!(
        fs::read_to_string(mem.join("memory.limit_in_bytes")).expect("read"),
        "1048576"
    );
    assert_eq!(
        fs::read_to_string(root.join("pids/peapod/pod1/c1/pids.max")).expect("read"),
        "10"
    );
    let stats = cg.stats().expect("stats");
    assert_eq!(stats.oom_kills, 2);
    assert_eq!(stats.memory_usage_bytes, Some(4096));
    // Files are what a real cgroupfs would show; remove them so rmdir works on tmpfs.
    for d in subtree(root) {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            if e.path().is_file() {
                fs::remove_file(e.path()).expect("rm");
            }
        }
    }
    h.cgroup(Path::new("peapod/pod1"))
        .remove(Duration::from_secs(1))
        .expect("remove");
    assert!(!root.join("memory/peapod/pod1").exists());
    h.cgroup(Path::new("peapod/pod1"))
        .remove(Duration::from_secs(1))
        .expect("remove twice");
}

#[test]
fn v2_limit_writes() {
    let r = Resources {
        cpu_shares: Some(1024),
        cpu_quota_us: Some(50_000),
        cpu_period_us: None,
        memory_limit_bytes: Some(0),
        pids_limit: None,
    };
    let w = limit_writes(Version::V2, &r);
    assert!(w.contains(&("cpu", "cpu.weight", "39".to_string())));
    assert!(w.contains(&("cpu", "cpu.max", "50000 100000".to_string())));
    assert!(w.contains(&("memory", "memory.max", "max".to_string())));
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(262_144), 10_000);
}

#[test]
fn parse_keyed_values() {
    assert_eq!(
        parse_keyed("low 0\nhigh 0\nmax 1\noom 1\noom_kill 3\n", "oom_kill"),
        Some(3)
    );
    assert_eq!(parse_keyed("oom 1\n", "oom_kill"), None);
}

/// The machine's hierarchy for a test on the real cgroups, or `None` (the reason printed)
/// when not root, without cgroups, or, with `want`, of the other version.
fn real_hierarchy(want: Option<(Version, &str)>) -> Option<Hierarchy> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    match Hierarchy::detect(Path::new(DEFAULT_ROOT)) {
        Ok(h) => match want {
            Some((version, why)) if h.version() != version => {
                eprintln!("skipped: {why}");
                None
            }
            _ => Some(h),
        },
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// `program`, set to move itself into `cg` (through its join files) before it execs.
fn joining(cg: &Cgroup, program: &str) -> Result<Command, CgroupError> {
    use std::os::unix::process::CommandExt;
    let join = cg.join_files()?;
    let mut command = Command::new(program);
    // SAFETY: the closure only calls `JoinFiles::join`, which only writes to open files.
    unsafe {
        command.pre_exec(move || join.join().map_err(io::Error::other));
    }
    Ok(command)
}

/// On the real machine: a child moves itself into a fresh cgroup before it execs (through
/// the files its parent opened), is seen there, is killed through the cgroup, and the cgroup
/// is removed.
#[test]
fn real_cgroup_lifecycle() {
    let Some(h) = real_hierarchy(None) else {
        return;
    };
    let rel = format!("peapod-test-{}/c1", std::process::id());
    let cg = h.cgroup(Path::new(&rel));
    let top = h.cgroup(Path::new(rel.split('/').next().unwrap_or_default()));
    cg.create().expect("create");
    let mut command = joining(&cg, "sleep").expect("open the join files");
    let mut child = command.arg("100").spawn().expect("spawn sleep");
    let pid = child.id() as i32;
    let result = (|| -> Result<(), CgroupError> {
        assert_eq!(cg.pids()?, vec![pid]);
        assert_eq!(top.pids_recursive()?, vec![pid]);
        assert_eq!(cg.stats()?.pids_current, Some(1));
        top.kill_all(Duration::from_secs(5))?;
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let removed = top.remove(Duration::from_secs(5));
    result.expect("cgroup operations");
    removed.expect("remove");
    assert!(!top.exists());
}

/// On the real machine: limits land in the controller files, and a process over its memory
/// limit is killed by the kernel and counted as an OOM kill.
#[test]
fn real_limits_and_oom_kill() {
    use std::os::unix::process::CommandExt;
    let Some(h) = real_hierarchy(None) else {
        return;
    };
    let rel = format!("peapod-test-oom-{}", std::process::id());
    let cg = h.cgroup(Path::new(&rel));
    cg.create().expect("create");
    let result = (|| -> Result<(), String> {
        cg.apply(&Resources {
            cpu_shares: Some(512),
            cpu_quota_us: Some(25_000),
            cpu_period_us: Some(100_000),
            memory_limit_bytes: Some(16 << 20),
            pids_limit: Some(64),
        })
        .map_err(|e| e.to_string())?;
        let read = |controller: &str, file: &str| {
            cg.dir(controller)
                .and_then(|d| fs::read_to_string(d.join(file)).ok())
                .unwrap_or_default()
        };
        match h.version() {
            Version::V1 => {
                assert_eq!(read("cpu", "cpu.cfs_quota_us").trim(), "25000");
                assert_eq!(read("cpu", "cpu.shares").trim(), "512");
                assert_eq!(read("memory", "memory.limit_in_bytes").trim(), "16777216");
            }
            Version::V2 => {
                assert_eq!(read("cpu", "cpu.max").trim(), "25000 100000");
                assert_eq!(read("memory", "memory.max").trim(), "16777216");
            }
        }
        if cg.dir("pids").is_some() {
            assert_eq!(read("pids", "pids.max").trim(), "64");
        }
        let before = cg.oom_kill_count().map_err(|e| e.to_string())?;
        let procs: Vec<PathBuf> = cg.dirs().map(|d| d.join("cgroup.procs")).collect();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "head -c 64m /dev/zero | tail"]);
        // SAFETY: between fork and exec the child only writes "0" (itself) to cgroup.procs
        // through paths built before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for p in &procs {
                    fs::write(p, "0")?;
                }
                Ok(())
            });
        }
        let status = cmd.status().map_err(|e| e.to_string())?;
        assert!(!status.success(), "the hog survived its limit: {status}");
        let after = cg.oom_kill_count().map_err(|e| e.to_string())?;
        assert!(after > before, "no OOM kill counted ({before} -> {after})");
        Ok(())
    })();
    let removed = cg.remove(Duration::from_secs(5));
    result.expect("limits and OOM");
    removed.expect("remove");
}

/// Runs `script` with sh in every directory of `cg` (the shell joins, then execs the script),
/// and says whether it succeeded.
fn run_in(cg: &Cgroup, script: &str) -> bool {
    let mut join = String::new();
    for d in cg.dirs() {
        join.push_str(&format!("echo $$ > '{}/cgroup.procs' && ", d.display()));
    }
    Command::new("sh")
        .args(["-c", &format!("{join} exec sh -c '{script}'")])
        .status()
        .is_ok_and(|s| s.success())
}

/// What a device allow-list must decide, checked in a cgroup on the real kernel: /dev/null
/// opens, the kernel log does not, a node for it can be created but not opened; and outside
/// the cgroup the same opens work (so the test can fail).
fn check_devices_confined(cg: &Cgroup) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = tmp.path().join("kmsg");
    let kmsg = format!("mknod {} c 1 11 && : < {}", node.display(), node.display());
    assert!(run_in(cg, ": < /dev/null"), "/dev/null refused");
    assert!(
        Command::new("sh")
            .args(["-c", ": < /dev/kmsg"])
            .status()
            .is_ok_and(|s| s.success()),
        "/dev/kmsg cannot be opened even outside the cgroup"
    );
    assert!(
        !run_in(cg, ": < /dev/kmsg"),
        "/dev/kmsg opened inside the cgroup"
    );
    assert!(!run_in(cg, &kmsg), "a fresh node for /dev/kmsg opened");
    assert!(node.exists(), "mknod was refused; the rules allow it");
}

/// On the real machine's v1 `devices` hierarchy: the rules land in `devices.list` as written
/// and are enforced.
#[test]
fn real_v1_device_rules() {
    let Some(h) = real_hierarchy(Some((Version::V1, "the v2 test covers v2 hosts"))) else {
        return;
    };
    let devices_only = Hierarchy::v1(
        h.mounts()
            .iter()
            .filter(|m| m.name.split(',').any(|n| n == "devices"))
            .cloned()
            .collect(),
    );
    let cg = devices_only.cgroup(Path::new(&format!(
        "peapod-test-dev-{}",
        std::process::id()
    )));
    cg.create().expect("create");
    let result = std::panic::catch_unwind(|| {
        let applied = cg.apply_devices(&devices::default_rules()).expect("apply");
        assert_eq!(applied, DeviceConfinement::Enforced);
        let dir = cg.dir("devices").expect("devices dir");
        let list = fs::read_to_string(dir.join("devices.list")).expect("devices.list");
        let want: Vec<String> = devices::default_rules()
            .iter()
            .flat_map(DeviceRule::v1_lines)
            .collect();
        assert_eq!(list.lines().collect::<Vec<_>>(), want);
        check_devices_confined(&cg);
    });
    let removed = cg.remove(Duration::from_secs(5));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    removed.expect("remove");
}

/// On the real kernel's cgroup2 (the host's root on v2, systemd's `unified` mount on a
/// hybrid host): the generated program passes the verifier, attaches, and decides as the
/// rules say for real opens and mknods.
#[test]
fn real_v2_device_program() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let root = Path::new(DEFAULT_ROOT);
    let is_v2 = |p: &Path| statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC);
    let v2_root = if is_v2(root) {
        root.to_path_buf()
    } else if is_v2(&root.join("unified")) {
        root.join("unified")
    } else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let h = Hierarchy::v2(&v2_root);
    let cg = h.cgroup(Path::new(&format!(
        "peapod-test-bpf-{}",
        std::process::id()
    )));
    cg.create().expect("create");
    let result = std::panic::catch_unwind(|| {
        let applied = cg.apply_devices(&devices::default_rules()).expect("apply");
        assert_eq!(applied, DeviceConfinement::Enforced);
        check_devices_confined(&cg);
    });
    let removed = cg.remove(Duration::from_secs(5));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    removed.expect("remove");
}

const USAGE_V1_STAT: &str = "total_rss 4194304\ntotal_inactive_file 6291456\n";
const USAGE_V2_STAT: &str = "anon 3145728\ninactive_file 4194304\n";

#[test]
fn reads_a_fake_v1_and_v2_tree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let mounts = ["cpu,cpuacct", "memory"]
        .iter()
        .map(|n| Mounted {
            name: n.to_string(),
            path: root.join("v1").join(n),
        })
        .collect();
    let v1 = Hierarchy::v1(mounts).cgroup(Path::new("peapod/pod1/c1"));
    let cpu = root.join("v1/cpu,cpuacct/peapod/pod1/c1");
    let mem = root.join("v1/memory/peapod/pod1/c1");
    for d in [&cpu, &mem] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(cpu.join("cpuacct.usage"), "42\n").expect("write");
    std::fs::write(mem.join("memory.usage_in_bytes"), "12582912\n").expect("write");
    std::fs::write(mem.join("memory.stat"), USAGE_V1_STAT).expect("write");
    let u = v1.usage().expect("usage");
    assert_eq!(u.cpu_usage_nanos, Some(42));
    assert_eq!(u.memory_working_set_bytes, Some(6_291_456));

    let v2 = Hierarchy::v2(&root.join("v2")).cgroup(Path::new("peapod/pod1"));
    let dir = root.join("v2/peapod/pod1");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("cpu.stat"), "usage_usec 7\n").expect("write");
    std::fs::write(dir.join("memory.current"), "8388608\n").expect("write");
    std::fs::write(dir.join("memory.stat"), USAGE_V2_STAT).expect("write");
    let u = v2.usage().expect("usage");
    assert_eq!(u.cpu_usage_nanos, Some(7000));
    assert_eq!(u.memory_working_set_bytes, Some(4_194_304));
    // A cgroup that is gone reads as nothing known.
    let gone = Hierarchy::v2(&root.join("v2")).cgroup(Path::new("peapod/nope"));
    assert_eq!(gone.usage().expect("usage"), Usage::default());
}

/// On a v1 machine with cpusets: a cpuset another process made an instant ago, still empty,
/// gets its parent's cpus and mems when a cgroup below it is created, so the new cgroup
/// can hold tasks (two node agents making `kubepods` at once left it empty before).
#[test]
fn real_cpuset_made_empty_by_another_is_filled() {
    let Some(h) = real_hierarchy(Some((
        Version::V1,
        "cgroup v2 cpusets inherit by themselves",
    ))) else {
        return;
    };
    let top_rel = format!("peapod-test-cpuset-{}", std::process::id());
    let top = h.cgroup(Path::new(&top_rel));
    let Some(top_cpuset) = top.dir("cpuset").map(Path::to_path_buf) else {
        eprintln!("skipped: no cpuset hierarchy");
        return;
    };
    fs::create_dir(&top_cpuset).expect("mkdir, as the other process did");
    let read = |dir: &Path, file: &str| {
        fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(
        read(&top_cpuset, "cpuset.cpus"),
        "",
        "a new v1 cpuset starts empty"
    );
    let cg = h.cgroup(&Path::new(&top_rel).join("pod"));
    let joined = cg.create().and_then(|()| {
        let status = joining(&cg, "true")?
            .status()
            .map_err(|source| CgroupError::Write {
                path: cg.relative().to_path_buf(),
                source,
            })?;
        assert!(status.success(), "true failed: {status}");
        Ok(())
    });
    let filled: Vec<String> = [top.dir("cpuset"), cg.dir("cpuset")]
        .into_iter()
        .flatten()
        .flat_map(|d| [read(d, "cpuset.cpus"), read(d, "cpuset.mems")])
        .collect();
    let removed = top.remove(Duration::from_secs(5));
    joined.expect("the new cgroup takes a task");
    assert_eq!(filled.len(), 4);
    assert!(filled.iter().all(|v| !v.is_empty()), "{filled:?}");
    removed.expect("remove");
}
