//! Container log rotation from the KubeletConfiguration (`containerLogMaxSize`,
//! `containerLogMaxFiles`), as the kubelet rotates: the current file plus at most
//! `max files - 1` rotated ones stay on disk, `kubectl logs` reads the current file, and
//! `kubectl logs -f` goes on across a rotation.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{wait_until, Peapod};

const WRITER: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c"]
    args:
    - |
      pad=$(printf '%0100d' 0)
      i=0
      while [ $i -lt 8 ]; do
        j=0
        while [ $j -lt 400 ]; do echo "batch $i line $j $pad"; j=$((j+1)); done
        i=$((i+1))
        sleep 1
      done
      echo done
      sleep 3600
"#;

#[test]
fn logs_rotate_at_the_configured_size_and_follow_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubelet.yaml");
    common::write_kubelet_config(
        &config,
        "containerLogMaxSize: 100Ki\ncontainerLogMaxFiles: 3\n",
    );
    let pp = Peapod::start_with(&["--config", config.to_str().expect("utf-8")]);
    pp.apply(WRITER);
    pp.wait_pod_phase("chatty", "Running", Duration::from_secs(60));
    // Follow from the start: the stream must reach the end across every rotation.
    let mut follow = pp
        .kubectl_cmd()
        .args(["logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let out = follow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut last_batch_lines = 0;
        for line in BufReader::new(out).lines() {
            let line = line.expect("line");
            if line.starts_with("batch 7 ") {
                last_batch_lines += 1;
            }
            if line == "done" {
                return last_batch_lines;
            }
        }
        last_batch_lines
    });
    wait_until("the writer is done", Duration::from_secs(90), || {
        let tail = pp.kubectl_ok(&["logs", "--tail=1", "chatty"]);
        (tail.trim() == "done").then_some(())
    });
    let uid = pp.jsonpath("pod/chatty", "{.metadata.uid}").expect("uid");
    let log_dir = pp
        .state_dir
        .join("logs")
        .join(format!("default_chatty_{uid}"))
        .join("app");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&log_dir)
        .expect("log dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("0.log"))
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(files[0].0, "0.log", "{files:?}");
    assert!(
        files[1..].iter().all(|(n, _)| n.starts_with("0.log.")),
        "{files:?}"
    );
    assert!(files[0].1 < 200 << 10, "{files:?}");
    // kubectl logs shows the current file: the oldest batches are gone.
    let all = pp.kubectl_ok(&["logs", "chatty"]);
    assert!(
        !all.contains("batch 0 line 0 "),
        "{}",
        &all[..200.min(all.len())]
    );
    assert!(all.ends_with("done\n"));
    // The follower saw every line of the last batch and the end, across the rotations.
    let seen = reader.join().expect("reader");
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(seen, 400);
}
