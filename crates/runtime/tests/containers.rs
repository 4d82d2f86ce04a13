//! End-to-end runtime tests on the real kernel (namespaces, overlayfs, cgroups; needs root).
//! The test binary is its own shim: run as `<exe> shim <pod dir>` it becomes the shim (the
//! way `peapod shim` does), otherwise it runs the tests below one after another.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::{
    ContainerConfig, ContainerState, FsStats, ImageBackend, ImageInfo, NetworkConfig,
    PodSandboxConfig, PortMapping, Protocol, Runtime, RuntimeConfig, RuntimeError, RuntimeService,
    SandboxState,
};

type TestResult = Result<(), String>;
type TestFn = fn(Arc<Env>) -> Pin<Box<dyn Future<Output = TestResult>>>;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "shim") {
        std::process::exit(shim::main(args[2..].to_vec()));
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("containers tests skipped: they need root");
        return;
    }
    let filter: Option<String> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| !a.starts_with('-'))
        .map(str::to_string);
    let tests: &[(&str, TestFn)] = &[
        ("runs_busybox_with_logs_hostname_pid1_and_cgroup", |e| {
            Box::pin(runs_busybox(e))
        }),
        ("records_exit_codes_and_reasons", |e| {
            Box::pin(exit_codes(e))
        }),
        ("missing_binary_is_start_error", |e| {
            Box::pin(start_error(e))
        }),
        ("stop_falls_back_to_sigkill", |e| Box::pin(stop_fallback(e))),
        ("new_runtime_sees_running_container", |e| {
            Box::pin(restart(e))
        }),
        ("user_workdir_env_and_bind_mounts", |e| {
            Box::pin(user_and_mounts(e))
        }),
        ("reset_cleans_up_after_dead_shim", |e| {
            Box::pin(dead_shim(e))
        }),
        ("sandbox_network_is_attached_and_released", |e| {
            Box::pin(sandbox_network(e))
        }),
        (
            "user_namespace_maps_ids_and_refusal_is_a_start_error",
            |e| Box::pin(user_namespace(e)),
        ),
    ];
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            std::process::exit(1);
        }
    };
    let mut failed = 0;
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let result = rt.block_on(async {
            let env = Arc::new(Env::new()?);
            let r = test(env.clone()).await;
            let cleanup = env.cleanup().await;
            r.and(cleanup)
        });
        match result {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED: {e}");
            }
        }
    }
    println!("test result: {} failed", failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Serves one image, "busybox", from a directory built from /bin/busybox.
struct DirImages {
    layer: PathBuf,
}

fn busybox_info() -> ImageInfo {
    ImageInfo {
        id: "sha256:busybox".into(),
        repo_tags: vec!["busybox:latest".into()],
        repo_digests: vec![],
        size_bytes: 0,
        config: Default::default(),
    }
}

#[async_trait::async_trait]
impl ImageBackend for DirImages {
    async fn pull(
        &self,
        reference: &str,
        _auth: Option<&runtime::Credentials>,
    ) -> Result<ImageInfo, RuntimeError> {
        self.get(reference)?.ok_or(RuntimeError::ImageNotFound {
            reference: reference.into(),
        })
    }
    fn get(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        Ok((reference == "busybox" || reference == "sha256:busybox").then(busybox_info))
    }
    fn list(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        Ok(vec![busybox_info()])
    }
    fn layer_dirs(&self, reference: &str) -> Result<Vec<PathBuf>, RuntimeError> {
        match self.get(reference)? {
            Some(_) => Ok(vec![self.layer.clone()]),
            None => Err(RuntimeError::ImageNotFound {
                reference: reference.into(),
            }),
        }
    }
    fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::ImageNotFound {
            reference: id.into(),
        })
    }
    fn fs_stats(&self) -> Result<FsStats, RuntimeError> {
        Ok(FsStats::default())
    }
}

/// One test's world: a temp state dir, a busybox layer, a runtime over them.
struct Env {
    tmp: tempfile::TempDir,
    config: RuntimeConfig,
    runtime: Runtime,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn make_busybox(root: &Path) -> Result<(), String> {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).map_err(err)?;
    std::fs::create_dir_all(root.join("etc")).map_err(err)?;
    std::fs::copy("/bin/busybox", bin.join("busybox")).map_err(err)?;
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .map_err(err)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).map_err(err)?;
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .map_err(err)?;
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").map_err(err)?;
    Ok(())
}

impl Env {
    fn new() -> Result<Self, String> {
        let tmp = tempfile::tempdir().map_err(err)?;
        let layer = tmp.path().join("layer");
        make_busybox(&layer)?;
        let exe = std::env::current_exe().map_err(err)?;
        let config = RuntimeConfig::new(tmp.path().join("state"), exe);
        let runtime = Runtime::with_images(
            config.clone(),
            Arc::new(DirImages {
                layer: layer.clone(),
            }),
        )
        .map_err(err)?;
        Ok(Self {
            tmp,
            config,
            runtime,
        })
    }

    fn reopen(&self) -> Result<Runtime, String> {
        let layer = self.tmp.path().join("layer");
        Runtime::with_images(self.config.clone(), Arc::new(DirImages { layer })).map_err(err)
    }

    fn sandbox_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("test-{}-{name}", std::process::id()),
            hostname: name.into(),
            log_directory: self.tmp.path().join("logs").join(name),
            ..Default::default()
        }
    }

    /// Removes everything and checks nothing is left: processes, cgroups, mounts, dirs.
    async fn cleanup(&self) -> TestResult {
        let sandboxes = self.runtime.list_pod_sandboxes().await.map_err(err)?;
        let containers = self.runtime.list_containers(None).await.map_err(err)?;
        let pids: Vec<u32> = sandboxes
            .iter()
            .filter_map(|s| s.pid)
            .chain(containers.iter().filter_map(|c| c.pid))
            .collect();
        self.runtime.reset().await.map_err(err)?;
        self.runtime
            .reset()
            .await
            .map_err(|e| format!("second reset: {e}"))?;
        let state = self.config.state_dir.join("pods");
        let left = std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0);
        if left != 0 {
            return Err(format!("{left} sandbox dirs left in {}", state.display()));
        }
        for pid in pids {
            if Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
                return Err(format!("process {pid} still runs"));
            }
        }
        for s in &sandboxes {
            for ctl in ["memory", "pids", "cpu", ""] {
                let dir = Path::new("/sys/fs/cgroup")
                    .join(ctl)
                    .join("peapod")
                    .join(format!("pod{}", s.config.uid));
                if dir.exists() {
                    return Err(format!("cgroup {} left", dir.display()));
                }
            }
        }
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(err)?;
        if let Some(m) = mounts.lines().find(|l| l.contains(&tmp)) {
            return Err(format!("mount left: {m}"));
        }
        Ok(())
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn container(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: "busybox".into(),
        image_id: "sha256:busybox".into(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        log_path: PathBuf::from(format!("{name}/0.log")),
        stop_signal: libc::SIGTERM,
        labels: BTreeMap::new(),
        ..Default::default()
    }
}

async fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl AsyncFnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_log(path: &Path, needle: &str) -> Result<String, String> {
    poll(
        &format!("{needle:?} in {}", path.display()),
        Duration::from_secs(10),
        async || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            Ok(text.contains(needle).then_some(text))
        },
    )
    .await
}

async fn wait_exit(rt: &Runtime, id: &str) -> Result<runtime::ContainerStatus, String> {
    poll("container exit", Duration::from_secs(10), async || {
        let st = rt.container_status(id).await.map_err(err)?;
        Ok((st.state == ContainerState::Exited).then_some(st))
    })
    .await
}

async fn runs_busybox(env: Arc<Env>) -> TestResult {
    let rt = &env.runtime;
    let sb = rt
        .run_pod_sandbox(&env.sandbox_config("pod-a"))
        .await
        .map_err(err)?
        .id;
    let list = rt.list_pod_sandboxes().await.map_err(err)?;
    if list.len() != 1 || list[0].state != SandboxState::Ready || list[0].pid.is_none() {
        return Err(format!("sandbox list: {list:?}"));
    }
    let id = rt
        .create_container(
            &sb,
            &container(
                "main",
                "echo hi; hostname; echo pid=$$; cat /etc/hosts; sleep 100",
            ),
        )
        .await
        .map_err(err)?;
    let st = rt.container_status(&id).await.map_err(err)?;
    if st.state != ContainerState::Created {
        return Err(format!("after create: {:?}", st.state));
    }
    rt.start_container(&id).await.map_err(err)?;
    let st = rt.container_status(&id).await.map_err(err)?;
    if st.state != ContainerState::Running || st.pid.is_none() || st.started_at.is_none() {
        return Err(format!("after start: {st:?}"));
    }
    // The hosts file is printed last: wait for it, so every earlier line is in the log too.
    let log = wait_log(&st.log_path, "# Kubernetes-managed hosts file.").await?;
    for needle in [
        " stdout F hi\n",
        " stdout F pod-a\n",
        " stdout F pid=1\n",
        "# Kubernetes-managed hosts file.",
    ] {
        if !log.contains(needle) {
            return Err(format!("log lacks {needle:?}: {log}"));
        }
    }
    let pid = st.pid.unwrap_or_default();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(err)?;
    let expected = format!("/peapod/pod{}/{id}", env.sandbox_config("pod-a").uid);
    if !cgroup.lines().any(|l| l.ends_with(&expected)) {
        return Err(format!("cgroup of {pid} is not {expected}: {cgroup}"));
    }
    // Removing a running container kills it and releases its cgroup and directory.
    rt.remove_container(&id).await.map_err(err)?;
    rt.remove_container(&id)
        .await
        .map_err(|e| format!("second remove: {e}"))?;
    if !rt.list_containers(Some(&sb)).await.map_err(err)?.is_empty() {
        return Err("container still listed".into());
    }
    rt.remove_pod_sandbox(&sb).await.map_err(err)?;
    rt.remove_pod_sandbox(&sb)
        .await
        .map_err(|e| format!("second remove: {e}"))?;
    Ok(())
}

async fn exit_codes(env: Arc<Env>) -> TestResult {
    let rt = &env.runtime;
    let sb = rt
        .run_pod_sandbox(&env.sandbox_config("pod-b"))
        .await
        .map_err(err)?
        .id;
    let mut exits = rt.container_events();
    for (name, script, code, reason) in [
        ("fail", "echo bye; exit 3", 3, "Error"),
        ("ok", "true", 0, "Completed"),
    ] {
        let id = rt
            .create_container(&sb, &container(name, script))
            .await
            .map_err(err)?;
        rt.start_container(&id).await.map_err(err)?;
        // The exit is announced, naming the container, its sandbox and its pod.
        let event = next_exit(&mut exits).await?;
        let uid = env.sandbox_config("pod-b").uid;
        if event.container_id != id || event.sandbox_id != sb || event.pod_uid != uid {
            return Err(format!("{name}: exit event {event:?}"));
        }
        let st = wait_exit(rt, &id).await?;
        if st.exit_code != Some(code)
            || st.reason.as_deref() != Some(reason)
            || st.finished_at.is_none()
        {
            return Err(format!("{name}: {st:?}"));
        }
    }
    let fail = rt.list_containers(Some(&sb)).await.map_err(err)?;
    let fail = fail
        .iter()
        .find(|c| c.config.name == "fail")
        .ok_or("fail not listed")?;
    let log = std::fs::read_to_string(&fail.log_path).map_err(err)?;
    if !log.contains(" stdout F bye\n") {
        return Err(format!("log: {log}"));
    }
    Ok(())
}

async fn start_error(env: Arc<Env>) -> TestResult {
    let rt = &env.runtime;
    let sb = rt
        .run_pod_sandbox(&env.sandbox_config("pod-c"))
        .await
        .map_err(err)?
        .id;
    let mut config = container("bad", "");
    config.args = vec!["no-such-binary".into()];
    let id = rt.create_container(&sb, &config).await.map_err(err)?;
    match rt.start_container(&id).await {
        Err(e @ RuntimeError::StartContainer { .. })
            if e.container_message()
                .contains("exec: \"no-such-binary\": executable file not found in $PATH") => {}
        other => return Err(format!("start: {other:?}")),
    }
    let st = rt.container_status(&id).await.map_err(err)?;
    if st.state != ContainerState::Exited
        || st.exit_code != Some(128)
        || st.reason.as_deref() != Some("StartError")
    {
        return Err(format!("status: {st:?}"));
    }
    Ok(())
}

async fn stop_fallback(env: Arc<Env>) -> TestResult {
    let rt = &env.runtime;
    let sb = rt
        .run_pod_sandbox(&env.sandbox_config("pod-d"))
        .await
        .map_err(err)?
        .id;
    let mut config = container("sleeper", "");
    // PID 1 without a SIGTERM handler ignores SIGTERM: only SIGKILL ends it.
    config.args = vec!["sleep".into(), "100".into()];
    let id = rt.create_container(&sb, &config).await.map_err(err)?;
    rt.start_container(&id).await.map_err(err)?;
    let start = Instant::now();
    rt.stop_container(&id, Duration::from_secs(1))
        .await
        .map_err(err)?;
    let took = start.elapsed();
    let st = rt.container_status(&id).await.map_err(err)?;
    if took < Duration::from_secs(1)
        || st.state != ContainerState::Exited
        || st.exit_code != Some(137)
    {
        return Err(format!("stop took {took:?}: {st:?}"));
    }
    rt.stop_container(&id, Duration::from_secs(1))
        .await
        .map_err(|e| format!("second stop: {e}"))?;
    rt.stop_pod_sandbox(&sb).await.map_err(err)?;
    let list = rt.list_pod_sandboxes().await.map_err(err)?;
    if list.first().map(|s| s.state) != Some(SandboxState::NotReady) {
        return Err(format!("after stop: {list:?}"));
    }
    Ok(())
}

async fn restart(env: Arc<Env>) -> TestResult {
    let sb = env
        .runtime
        .run_pod_sandbox(&env.sandbox_config("pod-e"))
        .await
        .map_err(err)?
        .id;
    let id = env
        .runtime
        .create_container(&sb, &container("c", "echo one; sleep 100"))
        .await
        .map_err(err)?;
    env.runtime.start_container(&id).await.map_err(err)?;
    let before = env.runtime.container_status(&id).await.map_err(err)?;
    // A second runtime over the same state dir stands for the agent after a restart; it
    // announces the exits of the containers it found running.
    let again = env.reopen()?;
    let mut exits = again.container_events();
    let after = again.container_status(&id).await.map_err(err)?;
    if after.state != ContainerState::Running || after.pid != before.pid {
        return Err(format!("before {before:?} after {after:?}"));
    }
    let sandboxes = again.list_pod_sandboxes().await.map_err(err)?;
    if sandboxes.len() != 1 || sandboxes[0].state != SandboxState::Ready {
        return Err(format!("sandboxes after restart: {sandboxes:?}"));
    }
    again
        .stop_container(&id, Duration::from_secs(5))
        .await
        .map_err(err)?;
    let st = again.container_status(&id).await.map_err(err)?;
    if st.state != ContainerState::Exited {
        return Err(format!("after stop: {st:?}"));
    }
    let event = next_exit(&mut exits).await?;
    if event.container_id != id {
        return Err(format!("exit event after restart: {event:?}"));
    }
    Ok(())
}

/// The next container exit the runtime announces, within a few seconds.
async fn next_exit(
    exits: &mut tokio::sync::broadcast::Receiver<runtime::ContainerEvent>,
) -> Result<runtime::ContainerEvent, String> {
    match tokio::time::timeout(Duration::from_secs(10), exits.recv()).await {
        Ok(Ok(event)) => Ok(event),
        Ok(Err(e)) => Err(format!("exit events: {e}")),
        Err(_) => Err("no exit event within 10 s".into()),
    }
}

async fn user_and_mounts(env: Arc<Env>) -> TestResult {
    let rt = &env.runtime;
    let data = env.tmp.path().join("data");
    std::fs::create_dir_all(&data).map_err(err)?;
    std::fs::write(data.join("greeting"), "from-host\n").map_err(err)?;
    let sb = rt
        .run_pod_sandbox(&env.sandbox_config("pod-f"))
        .await
        .map_err(err)?
        .id;
    let mut config = container(
        "u",
        "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); echo home=$HOME cwd=$(pwd) x=$X; cat /data/greeting; \
         touch /data/new 2>/dev/null || echo read-only; ls /dev/null /dev/pts/ptmx >/dev/null && echo devs",
    );
    config.user.run_as_user = Some(65534);
    config.user.supplemental_groups = vec![4000];
    config.working_dir = Some("/work/dir".into());
    config.env = vec![("X".into(), "1".into())];
    config.mounts = vec![runtime::Mount {
        host_path: data.clone(),
        container_path: "/data".into(),
        readonly: true,
        recursive_read_only: false,
    }];
    let id = rt.create_container(&sb, &config).await.map_err(err)?;
    rt.start_container(&id).await.map_err(err)?;
    let st = wait_exit(rt, &id).await?;
    let log = std::fs::read_to_string(&st.log_path).map_err(err)?;
    for needle in [
        "stdout F uid=65534 gid=65534 groups=65534 4000\n",
        "stdout F home=/home cwd=/work/dir x=1\n",
        "stdout F from-host\n",
        "stdout F read-only\n",
        "stdout F devs\n",
    ] {
        if !log.contains(needle) {
            return Err(format!("log lacks {needle:?}: {log}"));
        }
    }
    if st.exit_code != Some(0) {
        return Err(format!("status: {st:?}"));
    }
    // What the process got, its primary group among its groups (containerd's).
    let user = runtime::ContainerUser {
        uid: 65534,
        gid: 65534,
        supplemental_groups: vec![4000, 65534],
    };
    if st.user.as_ref() != Some(&user) {
        return Err(format!("status user: {:?}", st.user));
    }
    if data.join("new").exists() {
        return Err("read-only mount was written".into());
    }
    Ok(())
}

async fn dead_shim(env: Arc<Env>) -> TestResult {
    let rt = &env.runtime;
    let sb = rt
        .run_pod_sandbox(&env.sandbox_config("pod-g"))
        .await
        .map_err(err)?
        .id;
    let id = rt
        .create_container(&sb, &container("c", "sleep 100"))
        .await
        .map_err(err)?;
    rt.start_container(&id).await.map_err(err)?;
    let pid = rt
        .container_status(&id)
        .await
        .map_err(err)?
        .pid
        .ok_or("no pid")?;
    let shim = rt
        .list_pod_sandboxes()
        .await
        .map_err(err)?
        .first()
        .and_then(|s| s.pid)
        .ok_or("no shim")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(err)?;
    poll("shim death", Duration::from_secs(10), async || {
        let list = rt.list_pod_sandboxes().await.map_err(err)?;
        Ok((list.first().map(|s| s.state) == Some(SandboxState::NotReady)).then_some(()))
    })
    .await?;
    let st = rt.container_status(&id).await.map_err(err)?;
    if st.state != ContainerState::Unknown {
        return Err(format!("with the shim gone: {st:?}"));
    }
    rt.reset().await.map_err(err)?;
    if Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
        return Err(format!("container process {pid} survived reset"));
    }
    Ok(())
}

/// A CNI plugin that hands out 10.99.0.7 and records what it was asked, or fails when a
/// `fail` file sits beside it.
const FAKE_PLUGIN: &str = r#"#!/bin/sh
d=$(dirname "$0")
case "$CNI_COMMAND" in
ADD)
  cat > "$d/add-stdin"
  echo "$CNI_ARGS" > "$d/add-args"
  if [ -e "$d/fail" ]; then echo '{"code":11,"msg":"no addresses left"}'; exit 1; fi
  echo '{"cniVersion":"1.0.0","ips":[{"address":"10.99.0.7/24"}]}'
  ;;
DEL)
  echo "$CNI_CONTAINERID" >> "$d/dels"
  ;;
esac
"#;

async fn sandbox_network(env: Arc<Env>) -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let root = env.tmp.path().join("net");
    let bin = root.join("bin");
    let conf = root.join("net.d");
    std::fs::create_dir_all(&bin).map_err(err)?;
    std::fs::create_dir_all(&conf).map_err(err)?;
    let plugin = bin.join("fakenet");
    std::fs::write(&plugin, FAKE_PLUGIN).map_err(err)?;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    std::fs::write(
        conf.join("10-fake.conflist"),
        r#"{"cniVersion":"1.0.0","name":"fake","plugins":[{"type":"fakenet","capabilities":{"portMappings":true}}]}"#,
    )
    .map_err(err)?;
    let mut config = env.config.clone();
    config.state_dir = root.join("state");
    config.network = Some(NetworkConfig {
        conf_dir: conf,
        bin_dirs: vec![bin.clone()],
        ..Default::default()
    });
    let rt = Runtime::with_images(
        config.clone(),
        Arc::new(DirImages {
            layer: env.tmp.path().join("layer"),
        }),
    )
    .map_err(err)?;
    let result = check_sandbox_network(&rt, &env, &config, &bin).await;
    rt.reset().await.map_err(err)?;
    result
}

async fn check_sandbox_network(
    rt: &Runtime,
    env: &Env,
    config: &RuntimeConfig,
    bin: &Path,
) -> TestResult {
    let mut sandbox = env.sandbox_config("pod-n");
    sandbox.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 80,
        host_port: 18080,
        host_ip: String::new(),
    }];
    let sb = rt.run_pod_sandbox(&sandbox).await.map_err(err)?;
    let ip: std::net::IpAddr = "10.99.0.7".parse().map_err(err)?;
    if sb.state != SandboxState::Ready || sb.ips != vec![ip] {
        return Err(format!("sandbox: {sb:?}"));
    }
    let listed = rt.list_pod_sandboxes().await.map_err(err)?;
    if listed.iter().map(|s| &s.ips).collect::<Vec<_>>() != vec![&vec![ip]] {
        return Err(format!("listed: {listed:?}"));
    }
    let args = std::fs::read_to_string(bin.join("add-args")).map_err(err)?;
    if !args.contains("K8S_POD_NAME=pod-n")
        || !args.contains(&format!("K8S_POD_INFRA_CONTAINER_ID={}", sb.id))
    {
        return Err(format!("CNI_ARGS: {args}"));
    }
    let stdin = std::fs::read_to_string(bin.join("add-stdin")).map_err(err)?;
    if !stdin.contains(r#""hostPort":18080"#) {
        return Err(format!("ADD stdin: {stdin}"));
    }
    let hosts = std::fs::read_to_string(config.state_dir.join("pods").join(&sb.id).join("hosts"))
        .map_err(err)?;
    if !hosts.ends_with("10.99.0.7\tpod-n\n") {
        return Err(format!("hosts: {hosts}"));
    }
    let pin = config.state_dir.join("netns").join(&sb.id);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(err)?;
    if !mounts.contains(&pin.to_string_lossy().into_owned()) {
        return Err(format!("namespace not pinned at {}", pin.display()));
    }
    rt.stop_pod_sandbox(&sb.id).await.map_err(err)?;
    rt.remove_pod_sandbox(&sb.id).await.map_err(err)?;
    let dels = std::fs::read_to_string(bin.join("dels")).map_err(err)?;
    if dels.lines().collect::<Vec<_>>() != vec![sb.id.as_str()] {
        return Err(format!("DELs: {dels}"));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(err)?;
    if pin.exists() || mounts.contains(&pin.to_string_lossy().into_owned()) {
        return Err("namespace still pinned after removal".into());
    }

    std::fs::write(bin.join("fail"), "").map_err(err)?;
    match rt.run_pod_sandbox(&env.sandbox_config("pod-m")).await {
        Err(e @ RuntimeError::SetupNetwork { .. })
            if e.to_string()
                .starts_with("failed to setup network for sandbox")
                && e.to_string().ends_with("no addresses left") => {}
        other => return Err(format!("failed ADD: {other:?}")),
    }
    let left = std::fs::read_dir(config.state_dir.join("pods"))
        .map_err(err)?
        .count();
    let dels = std::fs::read_to_string(bin.join("dels")).map_err(err)?;
    if left != 0 || dels.lines().count() != 2 {
        return Err(format!("after a failed ADD: {left} sandboxes, DELs {dels}"));
    }
    Ok(())
}

/// `hostUsers: false` at the runtime: the container is root of a namespace mapping it to the
/// sandbox's range, owning the (idmapped) image files; a layer on a file system that refuses
/// idmapped mounts (an overlay mount) is a start error that says so.
async fn user_namespace(env: Arc<Env>) -> TestResult {
    let rt = &env.runtime;
    let mapping = runtime::IdMapping {
        container_id: 0,
        host_id: 40_000 << 16,
        length: 1 << 16,
    };
    let mut config = env.sandbox_config("pod-u");
    config.user_namespace = Some(mapping);
    let sb = rt.run_pod_sandbox(&config).await.map_err(err)?.id;
    let id = rt
        .create_container(
            &sb,
            &container(
                "main",
                "echo uid=$(id -u) owner=$(stat -c %u /bin/busybox); cat /proc/self/uid_map; echo end",
            ),
        )
        .await
        .map_err(err)?;
    rt.start_container(&id).await.map_err(err)?;
    let st = rt.container_status(&id).await.map_err(err)?;
    let log = wait_log(&st.log_path, "stdout F end").await?;
    let map_line = format!("0 {} 65536", 40_000u32 << 16);
    let mapped = log
        .lines()
        .any(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" ") == map_line);
    if !log.contains(" stdout F uid=0 owner=0\n") || !mapped {
        return Err(format!("log: {log}"));
    }

    // The same image served from an overlay mount, which cannot be idmapped.
    let dir = env.tmp.path();
    let (lower, upper, work, merged) = (
        dir.join("layer"),
        dir.join("ovl-upper"),
        dir.join("ovl-work"),
        dir.join("ovl"),
    );
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(err)?;
    let refused = async {
        let mut other = env.config.clone();
        other.state_dir = dir.join("state-ovl");
        let rt2 = Runtime::with_images(
            other,
            Arc::new(DirImages {
                layer: merged.clone(),
            }),
        )
        .map_err(err)?;
        let result = async {
            let mut config = env.sandbox_config("pod-v");
            config.user_namespace = Some(mapping);
            let sb2 = rt2.run_pod_sandbox(&config).await.map_err(err)?.id;
            let id = rt2
                .create_container(&sb2, &container("refused", "true"))
                .await
                .map_err(err)?;
            match rt2.start_container(&id).await {
                Err(e)
                    if e.container_message()
                        .contains("does not support idmapped mounts") =>
                {
                    Ok(())
                }
                other => Err(format!("start on an overlay layer: {other:?}")),
            }
        }
        .await;
        rt2.reset().await.map_err(err)?;
        result
    }
    .await;
    let unmounted = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).map_err(err);
    refused.and(unmounted)
}
