//! A docker-registry on 127.0.0.1 serving the busybox fixture as `busybox:latest`, for
//! tests whose pods pull (`kubectl create job|deployment --image=…` leaves the pull policy
//! at `Always` for a `latest` tag), optionally behind HTTP Basic auth; stopped on drop.

use std::process::Command;

use super::{fixtures, workspace_root};

pub struct Registry {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The user [`Registry::start_with_auth`] accepts, and its password.
pub const AUTH_USER: &str = "puller";
pub const AUTH_PASSWORD: &str = "peapod-pull-pw";
/// bcrypt of [`AUTH_PASSWORD`] (cost 5), as `htpasswd -B` writes it.
const AUTH_HASH: &str = "$2b$05$yGBGjWi8/ZkPYb4tgCTfgO6ZuJCAgScfKj9TP5iXbgnYHFWpc3Tnq";

impl Registry {
    pub fn start() -> Self {
        Self::start_inner(false)
    }

    /// A registry that serves only [`AUTH_USER`] with [`AUTH_PASSWORD`] (HTTP Basic).
    pub fn start_with_auth() -> Self {
        Self::start_inner(true)
    }

    fn start_inner(auth: bool) -> Self {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let r = Registry { dir, port };
        let mut start = vec!["start".to_string(), r.dir_str(), port.to_string()];
        let mut push = vec![
            "push".to_string(),
            r.dir_str(),
            port.to_string(),
            fixtures()
                .join("busybox-oci")
                .to_str()
                .expect("path")
                .to_string(),
            "busybox:latest".to_string(),
        ];
        if auth {
            let htpasswd = r.dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{AUTH_USER}:{AUTH_HASH}\n")).expect("htpasswd");
            start.push(htpasswd.to_string_lossy().into_owned());
            push.push(format!("{AUTH_USER}:{AUTH_PASSWORD}"));
        }
        for args in [&start, &push] {
            r.script(&args.iter().map(String::as_str).collect::<Vec<_>>());
        }
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
