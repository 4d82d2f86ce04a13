//! Interactive pods end to end, driven through a real terminal: kubectl runs inside a detached
//! tmux session of known size, the test types into it with `tmux send-keys` and reads the
//! screen with `tmux capture-pane`. Covers `kubectl run -it --rm` (a command and its output,
//! `stty size` following the terminal, a resize, Ctrl-C reaching the foreground process, the
//! pod deleted on exit), `kubectl attach -it` to a `tty: true` pod twice in a row (over
//! WebSocket, then SPDY), and a `stdinOnce` pod whose process sees EOF when the first attach
//! session ends.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{wait_until, Peapod};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// One peapod at a time in this binary: with two at once, `kubectl run --rm` was seen (about
/// one run in ten) to wait over a minute for the deletion of its finished pod.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
const SCREEN_TIMEOUT: Duration = Duration::from_secs(60);

/// A tmux server of our own (its own socket) running one command in a detached session; the
/// server is killed on every way out of the test.
struct Tmux {
    socket: String,
    config: PathBuf,
    /// Commands run so far, numbering their end markers.
    commands: std::cell::Cell<u32>,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a `width`x`height` session named `s`.
    fn start(dir: &Path, name: &str, width: u16, height: u16, command: &str) -> Self {
        let config = dir.join(format!("tmux-{name}.conf"));
        // The pane stays after kubectl exits so the test can read its exit status.
        std::fs::write(&config, "set -g remain-on-exit on\nset -g status off\n")
            .expect("tmux config");
        let t = Tmux {
            socket: format!("peapod-e2e-{}-{name}", std::process::id()),
            config,
            commands: std::cell::Cell::new(0),
        };
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            "s",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running tmux")
    }

    /// Types `keys` (tmux key names, e.g. `Enter`, `C-c`, or literal text).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "s"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "tmux send-keys {keys:?}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "s"]).stdout).into_owned()
    }

    /// Waits until a line of the screen satisfies `f`; returns the screen.
    fn wait_line(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(what, SCREEN_TIMEOUT, || {
                last = self.screen();
                last.lines().any(|l| f(l.trim_end())).then(|| last.clone())
            })
        }));
        match found {
            Ok(screen) => screen,
            Err(_) => panic!("timed out waiting for {what}; screen:\n{last}"),
        }
    }

    /// Waits for the shell's prompt as the last non-empty line.
    fn wait_prompt(&self) {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until("the shell prompt", SCREEN_TIMEOUT, || {
                last = self.screen();
                let line = last.lines().rev().find(|l| !l.trim().is_empty())?;
                (line.trim_end() == "/ #").then_some(())
            })
        }));
        if found.is_err() {
            panic!("timed out waiting for the shell prompt; screen:\n{last}");
        }
    }

    /// Runs `command` in the shell and waits until it is done and the prompt is back: the
    /// shell only gets keys while it waits at its prompt (busybox's line editor may drop
    /// keys typed while a command runs).
    fn shell(&self, command: &str) {
        let n = self.commands.get() + 1;
        self.commands.set(n);
        self.keys(&["-l", &format!("{command}; echo =do''ne-{n}=")]);
        self.keys(&["Enter"]);
        let marker = format!("=done-{n}=");
        self.wait_line("the command to finish", |l| l == marker);
        self.wait_prompt();
    }

    /// Types `command` and Enter without waiting for it.
    fn type_line(&self, command: &str) {
        self.keys(&["-l", command]);
        self.keys(&["Enter"]);
    }

    /// The exit status of the pane's command once it has ended.
    /// The pane command's exit status; on timeout, the screen and `pp`'s last requests.
    fn wait_exit(&self, pp: &Peapod) -> i32 {
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until("the pane's command to exit", SCREEN_TIMEOUT, || {
                let out = self.run(&[
                    "list-panes",
                    "-t",
                    "s",
                    "-F",
                    "#{pane_dead} #{pane_dead_status}",
                ]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let (dead, status) = text.trim().split_once(' ')?;
                (dead == "1").then(|| status.parse().ok()).flatten()
            })
        }));
        match status {
            Ok(s) => s,
            Err(_) => panic!(
                "timed out waiting for the pane's command to exit; screen:\n{}\nserver log tail:\n{}",
                self.screen(),
                common::tail(&pp.server_log(), 80)
            ),
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Kills a kubectl child on every way out of the test.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A shell command line running kubectl with the test cluster's credentials.
fn kubectl_line(pp: &Peapod, args: &str) -> String {
    format!(
        "env KUBECONFIG={} HOME={} kubectl {args}",
        pp.kubeconfig.display(),
        pp.home.path().display()
    )
}

fn pod_gone(pp: &Peapod, name: &str) -> bool {
    let out = pp.kubectl(&["get", "pod", name]);
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
}

/// Waits until the pod is deleted; on timeout shows what it is stuck at.
fn wait_gone(pp: &Peapod, name: &str) {
    let gone = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the pod to be deleted", Duration::from_secs(90), || {
            pod_gone(pp, name).then_some(())
        })
    }));
    if gone.is_err() {
        let pod = pp.kubectl(&["get", "pod", name, "-o", "yaml"]);
        panic!(
            "pod {name} was not deleted:\n{}\nserver log tail:\n{}",
            String::from_utf8_lossy(&pod.stdout),
            common::tail(&pp.server_log(), 60)
        );
    }
}

/// Whether `sleep 1000` runs in the pod's container (seen from an exec).
fn sleeping(pp: &Peapod, pod: &str) -> bool {
    let out = pp.kubectl(&["exec", pod, "--", "ps", "-o", "args"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "sleep 1000")
}

#[test]
fn run_it_rm_types_resizes_interrupts_and_cleans_up() {
    let _serial = serial();
    // kubectl once hung after `pod "shell" deleted`: the requests show what it waited on.
    let pp = Peapod::start_with_access_log();
    let line = kubectl_line(
        &pp,
        &format!(
            "run -it --rm --restart=Never --image={BUSYBOX} --image-pull-policy=IfNotPresent shell -- sh"
        ),
    );
    let tmux = Tmux::start(pp.home.path(), "run", 100, 30, &line);
    tmux.wait_line("kubectl's attach hint", |l| {
        l.contains("If you don't see a command prompt")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_prompt();

    // What is typed reaches the shell and its output the screen (the quotes keep the typed
    // line itself from matching).
    tmux.shell("echo hel''lo");
    tmux.wait_line("hello from the shell", |l| l == "hello");

    // The pty has the terminal's size, and follows a resize.
    tmux.shell("stty size");
    tmux.wait_line("the initial size", |l| l == "30 100");
    let out = tmux.run(&["resize-window", "-t", "s", "-x", "120", "-y", "40"]);
    assert!(out.status.success(), "tmux resize-window");
    wait_until("tmux to resize", SCREEN_TIMEOUT, || {
        let out = tmux.run(&[
            "display-message",
            "-p",
            "-t",
            "s",
            "#{window_width}x#{window_height}",
        ]);
        (String::from_utf8_lossy(&out.stdout).trim() == "120x40").then_some(())
    });
    tmux.shell("stty size");
    tmux.wait_line("the new size", |l| l == "40 120");

    // Ctrl-C in raw mode reaches the foreground process as SIGINT through the pty.
    tmux.type_line("sleep 1000");
    wait_until("sleep to run in the pod", SCREEN_TIMEOUT, || {
        sleeping(&pp, "shell").then_some(())
    });
    tmux.keys(&["C-c"]);
    wait_until("Ctrl-C to end sleep", SCREEN_TIMEOUT, || {
        (!sleeping(&pp, "shell")).then_some(())
    });
    tmux.wait_prompt();
    tmux.shell("echo sti''ll here");
    tmux.wait_line("the shell to go on", |l| l == "still here");

    // The container's terminal output is its log, as kubelet writes it for a tty.
    let logs = pp.kubectl_ok(&["logs", "shell"]);
    assert!(
        logs.lines().any(|l| l.trim_end() == "hello"),
        "logs: {logs}"
    );

    // `exit` ends the shell, kubectl, and (--rm) the pod.
    tmux.type_line("exit");
    wait_gone(&pp, "shell");
    assert_eq!(tmux.wait_exit(&pp), 0, "screen:\n{}", tmux.screen());
}

#[test]
fn attach_it_to_a_tty_pod_twice_and_stdin_once() {
    let _serial = serial();
    let pp = Peapod::start();
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: term
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sh"]
    stdin: true
    tty: true
"#
    ));
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/term", "--timeout=90s"]);

    // Two attach sessions one after the other reach the same shell: the first over
    // WebSocket (kubectl's default), the second over SPDY/3.1 (its fallback, and what
    // kubectl <1.30 speaks).
    for (round, word, env) in [
        ("first", "fir''st", ""),
        (
            "second",
            "sec''ond",
            "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false ",
        ),
    ] {
        let tmux = Tmux::start(
            pp.home.path(),
            round,
            90,
            25,
            &format!("{env}{}", kubectl_line(&pp, "attach -it term")),
        );
        tmux.wait_line("kubectl's attach hint", |l| {
            l.contains("If you don't see a command prompt")
        });
        tmux.keys(&["Enter"]);
        tmux.wait_prompt();
        tmux.shell(&format!("echo {word}"));
        tmux.wait_line("the echo", |l| l == round);
        tmux.shell("stty size");
        tmux.wait_line("the attach's size", |l| l == "25 90");
        // Dropping the tmux server kills this kubectl: the session ends, the shell stays.
    }
    assert_eq!(
        pp.jsonpath("pod/term", "{.status.phase}").as_deref(),
        Some("Running")
    );

    // stdinOnce without a tty: `kubectl run -i` attaches, writes its stdin and closes it;
    // the process sees EOF and goes on.
    let child = pp
        .kubectl_cmd()
        .args([
            "run",
            "-i",
            "--rm",
            "--restart=Never",
            &format!("--image={BUSYBOX}"),
            "--image-pull-policy=IfNotPresent",
            "once",
            "--",
            "sh",
            "-c",
            "cat; echo got-e''of",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl run -i");
    let mut child = KillOnDrop(Some(child));
    let running = child.0.as_mut().expect("child");
    {
        use std::io::Write;
        let mut stdin = running.stdin.take().expect("stdin");
        stdin.write_all(b"line one\n").expect("write stdin");
    }
    let waited = wait_until("kubectl run -i to finish", Duration::from_secs(90), || {
        running.try_wait().expect("try_wait")
    });
    let out = child
        .0
        .take()
        .expect("child")
        .wait_with_output()
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        waited.success(),
        "kubectl run -i: {waited}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("line one\n"), "stdout: {stdout}");
    assert!(stdout.contains("got-eof\n"), "stdout: {stdout}");
    wait_until(
        "the stdinOnce pod to be deleted",
        Duration::from_secs(60),
        || pod_gone(&pp, "once").then_some(()),
    );
}
