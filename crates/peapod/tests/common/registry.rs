//! A docker-registry on 127.0.0.1 serving the busybox fixture as `busybox:latest`, for
//! tests whose pods pull (`kubectl create job|deployment --image=…` leaves the pull policy
//! at `Always` for a `latest` tag); stopped on drop.

use std::process::Command;

use super::{fixtures, workspace_root};

pub struct Registry {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Registry {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let r = Registry { dir, port };
        r.script(&["start", &r.dir_str(), &port.to_string()]);
        let layout = fixtures().join("busybox-oci");
        r.script(&[
            "push",
            &r.dir_str(),
            &port.to_string(),
            layout.to_str().expect("path"),
            "busybox:latest",
        ]);
        r
    }

    /// The fixture's reference in this registry.
    pub fn busybox(&self) -> String {
        format!("127.0.0.1:{}/busybox:latest", self.port)
    }

    fn dir_str(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    fn script(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(workspace_root().join("tests/fixtures/registry.sh"))
            .args(args)
            .status()
            .expect("registry.sh");
        assert!(status.success(), "registry.sh {args:?} failed");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("tests/fixtures/registry.sh"))
            .args(["stop", &self.dir_str()])
            .status();
    }
}
