//! Seccomp, tried from inside containers: under the runtime default profile a root
//! container cannot create namespaces (`unshare`, `clone` with namespace flags), mount
//! through a user namespace, use keyrings or io_uring, ptrace another process, open
//! AF_VSOCK sockets, change its execution domain or make system calls the table does not
//! know, while ordinary work still runs; the same probes succeed under `Unconfined` (so the
//! test would notice a filter that refuses nothing), a capability opens exactly its calls,
//! and a Localhost profile is applied as written. Missing, invalid and escaping profile
//! names are refused with a reason.
//!
//! Busybox has `unshare` and `mount`; the other calls are made by tiny static probes, each
//! a hand-assembled x86_64 ELF that makes one system call and exits with its errno (0 on
//! success), mounted into the containers from a host directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::{wait_until, Peapod};

const IMAGE: &str = "docker.io/library/busybox:latest";

/// One system call to try: probe name, number and arguments.
struct Probe {
    name: &'static str,
    nr: u64,
    args: [u64; 6],
}

/// The probes of this architecture (none where we cannot assemble them).
fn probes() -> Vec<Probe> {
    if !cfg!(target_arch = "x86_64") {
        return Vec::new();
    }
    let p = |name, nr, a: &[u64]| {
        let mut args = [0u64; 6];
        args[..a.len()].copy_from_slice(a);
        Probe { name, nr, args }
    };
    vec![
        // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, create = 0).
        p("keyctl", 250, &[0, u64::MAX, 0]),
        // ptrace(PTRACE_SEIZE, 1, 0, 0): the container's init, same user, no stop.
        p("ptrace", 101, &[0x4206, 1, 0, 0]),
        // io_uring_setup(1, NULL): EFAULT where io_uring is reachable.
        p("io_uring", 425, &[1, 0]),
        // personality(ADDR_NO_RANDOMIZE), then the query value the profile allows.
        p("personality", 135, &[0x0040000]),
        p("personality_query", 135, &[0xffff_ffff]),
        // socket(AF_VSOCK, SOCK_STREAM, 0) and socket(AF_INET, SOCK_STREAM, 0).
        p("vsock", 41, &[40, 1, 0]),
        p("inet", 41, &[2, 1, 0]),
        // clone(CLONE_NEWUSER | SIGCHLD): both processes exit 0 if it works.
        p("clone_newuser", 56, &[0x1000_0000 | 17, 0, 0, 0, 0]),
        // clone3(NULL, 0): EINVAL from the kernel; the default profile answers ENOSYS.
        p("clone3", 435, &[0, 0]),
        // A number no kernel has yet.
        p("unknown", 1000, &[]),
    ]
}

/// A static x86_64 ELF executable that makes the probe's call and exits with its errno.
fn probe_elf(p: &Probe) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let mut code = Vec::new();
    let mut mov = |prefix: &[u8], v: u64| {
        code.extend_from_slice(prefix);
        code.extend_from_slice(&v.to_le_bytes());
    };
    mov(&[0x48, 0xB8], p.nr); // mov rax, nr
    mov(&[0x48, 0xBF], p.args[0]); // mov rdi, a0
    mov(&[0x48, 0xBE], p.args[1]); // mov rsi, a1
    mov(&[0x48, 0xBA], p.args[2]); // mov rdx, a2
    mov(&[0x49, 0xBA], p.args[3]); // mov r10, a3
    mov(&[0x49, 0xB8], p.args[4]); // mov r8, a4
    mov(&[0x49, 0xB9], p.args[5]); // mov r9, a5
    code.extend_from_slice(&[
        0x0F, 0x05, // syscall
        0x48, 0x85, 0xC0, // test rax, rax
        0x79, 0x05, // jns ok
        0x48, 0xF7, 0xD8, // neg rax (the errno)
        0xEB, 0x02, // jmp done
        0x31, 0xC0, // ok: xor eax, eax
        0x48, 0x89, 0xC7, // done: mov rdi, rax
        0xB8, 0x3C, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
        0x0F, 0x05, // syscall
    ]);
    let size = HEADERS + code.len() as u64;
    let mut elf = Vec::new();
    // ELF header: 64-bit, little-endian, executable, x86_64.
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    elf.extend_from_slice(&0x3Eu16.to_le_bytes()); // e_machine: x86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&v.to_le_bytes());
    }
    // One PT_LOAD segment, read + execute, mapping the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    for v in [0, BASE, BASE, size, size, 0x1000] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(&code);
    elf
}

fn write_probes(dir: &Path) {
    for p in probes() {
        let path = dir.join(p.name);
        std::fs::write(&path, probe_elf(&p)).expect("writing a probe");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// The shell script every probing container runs: `name=exit code` per check.
fn probe_script() -> String {
    let mut s = String::from("grep Seccomp: /proc/self/status; ");
    for p in probes() {
        s += &format!("/probes/{0}; echo {0}=$?; ", p.name);
    }
    s += "unshare -U true; echo unshare_user=$?; \
          unshare -Urm sh -c 'mount -t tmpfs probe /tmp'; echo userns_mount=$?; \
          unshare -n true; echo unshare_net=$?; \
          mkdir /tmp/d; echo mkdir=$?; \
          cd /tmp && seq 1 500 > n && sort -rn n | head -1 && tar czf n.tgz n && \
          tar xzf n.tgz -O | wc -l && ps > /dev/null && date > /dev/null && echo ordinary=ok";
    s
}

/// A pod whose one container runs the probe script.
fn pod(name: &str, security: &str, probes_dir: &Path) -> String {
    let command = format!("[\"sh\", \"-c\", {:?}]", probe_script());
    pod_with(name, "", &command, security, probes_dir)
}

fn pod_with(
    name: &str,
    spec_extra: &str,
    command: &str,
    security: &str,
    probes_dir: &Path,
) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  \
         terminationGracePeriodSeconds: 1\n{spec_extra}  volumes:\n  - name: probes\n    hostPath:\n      \
         path: {dir}\n      type: Directory\n  containers:\n  - name: c\n    image: {IMAGE}\n    \
         imagePullPolicy: IfNotPresent\n    command: {command}\n    \
         volumeMounts:\n    - name: probes\n      mountPath: /probes\n      readOnly: true\n{security}",
        dir = probes_dir.display(),
    )
}

fn seccomp(kind: &str, localhost: Option<&str>) -> String {
    let mut s = format!("    securityContext:\n      seccompProfile:\n        type: {kind}\n");
    if let Some(p) = localhost {
        s += &format!("        localhostProfile: {p:?}\n");
    }
    s
}

/// Runs pod `name` to completion and returns its `check=code` lines and its whole log.
fn results(pp: &Peapod, name: &str) -> (BTreeMap<String, String>, String) {
    pp.wait_pod_phase(name, "Succeeded", Duration::from_secs(90));
    let log = pp.kubectl_ok(&["logs", name]);
    let map = log
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    (map, log)
}

/// Waits for the container of `name` to be stuck in CreateContainerError; its message.
fn create_error(pp: &Peapod, name: &str) -> String {
    let state = |f: &str| {
        pp.jsonpath(
            &format!("pod/{name}"),
            &format!("{{.status.containerStatuses[0].state.waiting.{f}}}"),
        )
        .unwrap_or_default()
    };
    wait_until(
        &format!("{name} to show CreateContainerError"),
        Duration::from_secs(60),
        || (state("reason") == "CreateContainerError").then(|| state("message")),
    )
}

/// `kubectl apply` of a manifest the API server must refuse; its error output.
fn apply_refused(pp: &Peapod, manifest: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = pp
        .kubectl_cmd()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("writing stdin");
    let out = child.wait_with_output().expect("kubectl output");
    assert!(!out.status.success(), "apply was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn seccomp_profiles_confine_and_are_applied_as_written() {
    let pp = Peapod::start();
    let probe_dir = tempfile::tempdir().expect("probe dir");
    write_probes(probe_dir.path());
    let profiles = pp.state_dir.join("seccomp");
    std::fs::create_dir_all(&profiles).expect("profile dir");
    std::fs::write(
        profiles.join("deny-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .expect("profile");
    std::fs::write(
        profiles.join("broken.json"),
        r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#,
    )
    .expect("profile");

    let dir = probe_dir.path();
    pp.apply(&pod("confined", "", dir));
    pp.apply(&pod("unconfined", &seccomp("Unconfined", None), dir));
    pp.apply(&pod(
        "ptracer",
        "    securityContext:\n      capabilities:\n        add: [\"SYS_PTRACE\"]\n",
        dir,
    ));
    pp.apply(&pod(
        "localhost",
        &seccomp("Localhost", Some("deny-mkdir.json")),
        dir,
    ));
    pp.apply(&pod(
        "missing",
        &seccomp("Localhost", Some("absent.json")),
        dir,
    ));
    pp.apply(&pod(
        "broken",
        &seccomp("Localhost", Some("broken.json")),
        dir,
    ));
    let sleep = r#"["sleep", "3600"]"#;
    pp.apply(&pod_with("sleeper", "", sleep, "", dir));

    // --- RuntimeDefault: the filter is loaded and refuses every escape; work still runs.
    let (rd, log) = results(&pp, "confined");
    assert!(log.contains("Seccomp:\t2"), "{log}");
    let is = |m: &BTreeMap<String, String>, k: &str, v: &str| {
        assert_eq!(m.get(k).map(String::as_str), Some(v), "{k}: {m:?}");
    };
    for check in ["unshare_user", "unshare_net"] {
        is(&rd, check, "1");
    }
    assert_ne!(
        rd.get("userns_mount").map(String::as_str),
        Some("0"),
        "{log}"
    );
    is(&rd, "mkdir", "0");
    is(&rd, "ordinary", "ok");
    assert!(log.contains("500\n"), "{log}");
    let io_uring_reachable = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|v| v.trim() == "0")
        .unwrap_or(true);
    if !probes().is_empty() {
        for check in [
            "keyctl",
            "ptrace",
            "io_uring",
            "personality",
            "vsock",
            "clone_newuser",
            "unknown",
        ] {
            is(&rd, check, "1");
        }
        is(&rd, "clone3", "38");
        is(&rd, "personality_query", "0");
        is(&rd, "inet", "0");
    }

    // --- Unconfined: no filter, and the same probes get past it.
    let (un, log) = results(&pp, "unconfined");
    assert!(log.contains("Seccomp:\t0"), "{log}");
    is(&un, "unshare_user", "0");
    is(&un, "userns_mount", "0");
    is(&un, "ordinary", "ok");
    if !probes().is_empty() {
        for check in ["ptrace", "personality", "clone_newuser", "inet"] {
            is(&un, check, "0");
        }
        let mut other_than_eperm = vec!["keyctl", "vsock"];
        if io_uring_reachable {
            other_than_eperm.push("io_uring");
        }
        for check in other_than_eperm {
            assert_ne!(
                un.get(check).map(String::as_str),
                Some("1"),
                "{check}: {un:?}"
            );
        }
        assert_ne!(un.get("clone3").map(String::as_str), Some("38"), "{un:?}");
        is(&un, "unknown", "38");
    }

    // --- A capability opens the calls it governs, and only those.
    let (pt, log) = results(&pp, "ptracer");
    assert!(log.contains("Seccomp:\t2"), "{log}");
    if !probes().is_empty() {
        is(&pt, "ptrace", "0");
        is(&pt, "keyctl", "1");
    }
    is(&pt, "unshare_user", "1");

    // --- Localhost: the file's rules, not the default's (mkdir gets its errno, EACCES;
    // the user namespace the default refuses is allowed by its defaultAction).
    let (lh, log) = results(&pp, "localhost");
    assert!(log.contains("Seccomp:\t2"), "{log}");
    is(&lh, "mkdir", "1");
    assert!(log.contains("Permission denied"), "{log}");
    is(&lh, "unshare_user", "0");

    // --- Profiles that cannot be used: the container is not created, and says why.
    let msg = create_error(&pp, "missing");
    assert!(
        msg.contains("cannot load seccomp profile") && msg.contains("absent.json"),
        "{msg}"
    );
    let msg = create_error(&pp, "broken");
    assert!(msg.contains("unknown action"), "{msg}");
    let out = apply_refused(
        &pp,
        &pod("escape", &seccomp("Localhost", Some("../kubeconfig")), dir),
    );
    assert!(out.contains("must not contain '..'"), "{out}");
    assert!(pp.kubectl(&["get", "pod", "escape"]).status.code() != Some(0));

    // --- kubectl exec is no way around the filter.
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "--timeout=60s",
    ]);
    let exec = pp.kubectl(&["exec", "sleeper", "--", "unshare", "-U", "true"]);
    assert_eq!(exec.status.code(), Some(1), "{exec:?}");
    assert!(
        String::from_utf8_lossy(&exec.stderr).contains("Operation not permitted"),
        "{exec:?}"
    );

    pp.kubectl_ok(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]);
}
