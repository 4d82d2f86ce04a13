//! Where a pull's credentials come from, as the kubelet gathers them: the pod's
//! `imagePullSecrets` (type `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`),
//! added one after another into one keyring, and the node-wide docker configuration, the
//! first file found on the node's search path. The pod's keyring is asked first.

use std::path::{Path, PathBuf};

use images::{ConfigFormat, CredentialsError, Keyring};
use k8s_openapi::api::core::v1::Secret;

/// A pull Secret whose docker configuration does not parse.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("image pull secret {name}: invalid {key}")]
    Parse {
        name: String,
        key: &'static str,
        #[source]
        source: CredentialsError,
    },
    #[error("node registry credentials {path}")]
    NodeFile {
        path: PathBuf,
        #[source]
        source: CredentialsError,
    },
}

/// The keyring of a pod's pull Secrets, in the pod's order. Secrets of other types, or
/// without their type's key, add nothing (as the kubelet skips them).
pub fn keyring_from_secrets(secrets: &[Secret]) -> Result<Keyring, SecretError> {
    let mut keyring = Keyring::default();
    for secret in secrets {
        let (key, format) = match secret.type_.as_deref() {
            Some("kubernetes.io/dockerconfigjson") => {
                (".dockerconfigjson", ConfigFormat::ConfigJson)
            }
            Some("kubernetes.io/dockercfg") => (".dockercfg", ConfigFormat::Dockercfg),
            _ => continue,
        };
        let Some(data) = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .filter(|d| !d.0.is_empty())
        else {
            continue;
        };
        let parsed = Keyring::parse(&data.0, format).map_err(|source| SecretError::Parse {
            name: secret.metadata.name.clone().unwrap_or_default(),
            key,
            source,
        })?;
        keyring.extend(parsed);
    }
    Ok(keyring)
}

/// The credentials to try for `image`: the pod's keyring's matches, then the node's (the
/// kubelet's union keyring). An image that does not parse has none (its pull fails on it).
pub fn credentials_for(image: &str, pod: &Keyring, node: &Keyring) -> Vec<images::Credentials> {
    let Ok(reference) = images::Reference::parse(image) else {
        return Vec::new();
    };
    let repository = reference.name();
    let mut found = pod.lookup(&repository);
    found.extend(node.lookup(&repository));
    found
}

/// The node-wide docker configuration: the first of `files` that exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCredentials {
    files: Vec<PathBuf>,
}

impl NodeCredentials {
    /// `explicit` alone when given; else, as the kubelet searches its root dir and the home
    /// directory: `<state_dir>/config.json`, `$DOCKER_CONFIG/config.json`,
    /// `$HOME/.docker/config.json`, then the legacy `<state_dir>/.dockercfg` and
    /// `$HOME/.dockercfg`.
    pub fn search(
        explicit: Option<PathBuf>,
        state_dir: &Path,
        docker_config: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> Self {
        if let Some(path) = explicit {
            return Self { files: vec![path] };
        }
        let mut files = vec![state_dir.join("config.json")];
        files.extend(docker_config.map(|d| d.join("config.json")));
        files.extend(home.as_ref().map(|h| h.join(".docker").join("config.json")));
        files.push(state_dir.join(".dockercfg"));
        files.extend(home.map(|h| h.join(".dockercfg")));
        Self { files }
    }

    /// The files looked at, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The keyring of the first file that exists (empty when none does). Read at every
    /// pull, so an edited file counts without a restart.
    pub fn load(&self) -> Result<Keyring, SecretError> {
        let Some(path) = self.files.iter().find(|p| p.is_file()) else {
            return Ok(Keyring::default());
        };
        images::read_keyring(path).map_err(|source| SecretError::NodeFile {
            path: path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, type_: &str, key: &str, data: &str) -> Secret {
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            type_: Some(type_.to_owned()),
            data: Some(
                [(key.to_owned(), ByteString(data.as_bytes().to_vec()))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn users(k: &Keyring, repo: &str) -> Vec<String> {
        k.lookup(repo).into_iter().map(|c| c.username).collect()
    }

    #[test]
    fn secrets_of_both_docker_types_in_order() -> Result<(), SecretError> {
        let k = keyring_from_secrets(&[
            secret(
                "a",
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                r#"{"auths":{"r.io":{"username":"first","password":"p"}}}"#,
            ),
            secret(
                "b",
                "kubernetes.io/dockercfg",
                ".dockercfg",
                r#"{"r.io":{"username":"second","password":"p"}}"#,
            ),
            // Wrong type or key: skipped, as the kubelet does.
            secret("c", "Opaque", ".dockerconfigjson", "not json"),
            secret("d", "kubernetes.io/dockercfg", ".dockerconfigjson", "x"),
        ])?;
        assert_eq!(users(&k, "r.io/app"), ["first", "second"]);
        let bad = keyring_from_secrets(&[secret(
            "bad",
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            "{",
        )]);
        assert!(
            matches!(&bad, Err(e) if e.to_string() == "image pull secret bad: invalid .dockerconfigjson"),
            "{bad:?}"
        );
        Ok(())
    }

    #[test]
    fn pod_credentials_come_before_the_node_s() -> Result<(), Box<dyn std::error::Error>> {
        let pod = Keyring::parse(
            br#"{"auths":{"127.0.0.1:5000":{"username":"pod","password":"p"}}}"#,
            ConfigFormat::ConfigJson,
        )?;
        let node = Keyring::parse(
            br#"{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"p"},
                 "127.0.0.1:5000/app":{"username":"node","password":"p"}}}"#,
            ConfigFormat::ConfigJson,
        )?;
        let users = |image: &str| -> Vec<String> {
            credentials_for(image, &pod, &node)
                .into_iter()
                .map(|c| c.username)
                .collect()
        };
        assert_eq!(users("127.0.0.1:5000/app:1"), ["pod", "node"]);
        assert_eq!(users("127.0.0.1:5000/other"), ["pod"]);
        assert_eq!(users("busybox"), ["hub"]);
        assert!(users("Not A Reference").is_empty());
        Ok(())
    }

    #[test]
    fn node_file_search_takes_the_first_that_exists() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let state = tmp.path().join("state");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join(".docker"))?;
        std::fs::create_dir_all(&state)?;
        let node = NodeCredentials::search(None, &state, None, Some(home.clone()));
        assert_eq!(node.files()[0], state.join("config.json"));
        assert!(node.load()?.is_empty());
        std::fs::write(
            home.join(".dockercfg"),
            r#"{"r.io":{"username":"legacy","password":"p"}}"#,
        )?;
        assert_eq!(users(&node.load()?, "r.io/x"), ["legacy"]);
        std::fs::write(
            home.join(".docker/config.json"),
            r#"{"auths":{"r.io":{"username":"home","password":"p"}}}"#,
        )?;
        assert_eq!(users(&node.load()?, "r.io/x"), ["home"]);
        std::fs::write(
            state.join("config.json"),
            r#"{"auths":{"r.io":{"username":"node","password":"p"}}}"#,
        )?;
        assert_eq!(users(&node.load()?, "r.io/x"), ["node"]);
        let explicit = tmp.path().join("creds.json");
        let only = NodeCredentials::search(Some(explicit.clone()), &state, None, Some(home));
        assert_eq!(only.files(), std::slice::from_ref(&explicit));
        assert!(only.load()?.is_empty());
        std::fs::write(&explicit, "{")?;
        assert!(matches!(only.load(), Err(SecretError::NodeFile { .. })));
        Ok(())
    }
}
