//! Network configuration lists: finding the one to use in a config directory the way libcni
//! and the container runtimes behind kubelet do (first loadable file in lexical order), and
//! writing peapod's default list when the directory holds none.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The CNI spec version peapod speaks and writes.
pub const CNI_VERSION: &str = "1.0.0";
/// Name of the default network (also the host-local allocation directory under
/// `/var/lib/cni/networks/`).
pub const DEFAULT_NETWORK: &str = "peapod";
/// File name of the default conflist; `10-` sorts it before most hand-written files.
pub const DEFAULT_FILE: &str = "10-peapod.conflist";

/// Why a config file or directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading CNI config dir {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading CNI config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing CNI config {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("CNI config {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("writing the default CNI config {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A parsed network configuration list (spec section "Network Configuration Lists").
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    pub cni_version: String,
    pub name: String,
    pub disable_check: bool,
    /// Each plugin's own config object, as written (its `type` validated).
    pub plugins: Vec<Map<String, Value>>,
}

impl ConfList {
    /// Parses a `.conflist`; `source` names the file in errors.
    pub fn from_json(value: Value, source: &Path) -> Result<Self, ConfigError> {
        let invalid = |problem: &str| ConfigError::Invalid {
            path: source.to_path_buf(),
            problem: problem.to_string(),
        };
        let Value::Object(obj) = value else {
            return Err(invalid("not a JSON object"));
        };
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("missing network name"))?
            .to_string();
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("0.1.0")
            .to_string();
        let disable_check = match obj.get("disableCheck") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        let plugins = match obj.get("plugins") {
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|p| match p {
                    Value::Object(m) => Ok(m.clone()),
                    _ => Err(invalid("a plugin entry is not an object")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(invalid("no plugins")),
        };
        for p in &plugins {
            let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
            // The type names a binary in the bin dirs; it must never be a path.
            if ty.is_empty() || ty.contains('/') || ty == "." || ty == ".." {
                return Err(invalid("a plugin has no valid type"));
            }
        }
        Ok(Self {
            cni_version,
            name,
            disable_check,
            plugins,
        })
    }

    /// A single-plugin `.conf` turned into a list of one, as libcni's
    /// `ConfListFromConf` does.
    pub fn from_single(value: Value, source: &Path) -> Result<Self, ConfigError> {
        let Value::Object(obj) = &value else {
            return Self::from_json(value, source);
        };
        let list = json!({
            "cniVersion": obj.get("cniVersion").cloned().unwrap_or(Value::from("0.1.0")),
            "name": obj.get("name").cloned().unwrap_or(Value::Null),
            "plugins": [value.clone()],
        });
        Self::from_json(list, source)
    }

    /// The list as JSON again (stored with each result so DEL uses the config ADD used).
    pub fn to_json(&self) -> Value {
        json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins,
        })
    }

    /// The stdin of one plugin: its config plus the list's name and version, `prevResult`
    /// and the `runtimeConfig` entries for the capabilities it declares (spec: "Deriving
    /// execution configuration from plugin configuration").
    pub fn plugin_stdin(
        &self,
        index: usize,
        prev_result: Option<&Value>,
        capability_args: &Map<String, Value>,
    ) -> Value {
        let mut conf = self.plugins.get(index).cloned().unwrap_or_default();
        conf.insert("name".into(), Value::from(self.name.clone()));
        conf.insert("cniVersion".into(), Value::from(self.cni_version.clone()));
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        let wanted: Vec<String> = match conf.get("capabilities") {
            Some(Value::Object(caps)) => caps
                .iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        };
        let mut runtime = Map::new();
        for cap in wanted {
            if let Some(v) = capability_args.get(&cap) {
                runtime.insert(cap, v.clone());
            }
        }
        conf.remove("runtimeConfig");
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        Value::Object(conf)
    }

    pub fn plugin_type(&self, index: usize) -> &str {
        self.plugins
            .get(index)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Config files of `dir` in the order they are tried (libcni's `ConfFiles` with the
/// `.conf`, `.conflist` and `.json` extensions, sorted by name).
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::ReadDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads one config file (`.conflist` as a list, `.conf`/`.json` as a single plugin).
pub fn load_file(path: &Path) -> Result<ConfList, ConfigError> {
    let text = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_slice(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if path.extension().and_then(|e| e.to_str()) == Some("conflist") {
        ConfList::from_json(value, path)
    } else {
        ConfList::from_single(value, path)
    }
}

/// The first loadable config of `dir`, skipping (and logging) broken files as the container
/// runtimes do; `None` when there is none.
pub fn load_first(dir: &Path) -> Result<Option<(PathBuf, ConfList)>, ConfigError> {
    for path in conf_files(dir)? {
        match load_file(&path) {
            Ok(list) => return Ok(Some((path, list))),
            Err(err) => tracing::warn!(error = %err, "skipping CNI config"),
        }
    }
    Ok(None)
}

/// peapod's default network: a `bridge` (with `host-local` IPAM on the node's pod CIDR and
/// the bridge as the pods' gateway), `portmap` for `hostPort`, and `loopback`.
/// `hairpinMode` lets a pod reach itself through a Service address. The bridge plugin's
/// `ipMasq` is off: it would masquerade everything leaving the node's range, pods on other
/// nodes included; the node masquerades only what leaves the cluster's pod network (as
/// flannel does), so pods see each other's own addresses across nodes.
pub fn default_conflist(bridge: &str, pod_cidr: &str) -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": DEFAULT_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    })
}

/// The subnet of peapod's own default conflist (`None` for any other config).
fn default_subnet(path: &Path, list: &ConfList) -> Option<String> {
    if path.file_name().and_then(|n| n.to_str()) != Some(DEFAULT_FILE)
        || list.name != DEFAULT_NETWORK
    {
        return None;
    }
    list.plugins.first()?.get("ipam")?.get("ranges")?[0][0]
        .get("subnet")?
        .as_str()
        .map(str::to_string)
}

/// Whether `list`, loaded from `path`, is the default conflist peapod wrote (the runtime
/// then attaches pods to it in-process).
pub fn is_own_default(path: &Path, list: &ConfList) -> bool {
    default_subnet(path, list).is_some()
}

/// Writes the default conflist into `dir` unless a loadable config is already there;
/// returns the config to use either way. peapod's own default file is rewritten when it
/// names another range than `pod_cidr` (the node was given a new range); any other config
/// is the operator's and used as it is.
pub fn ensure_default(
    dir: &Path,
    bridge: &str,
    pod_cidr: &str,
) -> Result<(PathBuf, ConfList), ConfigError> {
    if let Some((path, list)) = load_first(dir)? {
        match default_subnet(&path, &list) {
            Some(subnet) if subnet != pod_cidr => {
                tracing::info!(path = %path.display(), old = %subnet, new = %pod_cidr, "the node's pod CIDR changed; rewriting the default CNI config");
            }
            _ => return Ok((path, list)),
        }
    }
    let path = dir.join(DEFAULT_FILE);
    let write_err = |source| ConfigError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let value = default_conflist(bridge, pod_cidr);
    let text =
        serde_json::to_vec_pretty(&value).map_err(|e| write_err(std::io::Error::other(e)))?;
    let tmp = dir.join(format!(".{DEFAULT_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, &text).map_err(write_err)?;
    std::fs::rename(&tmp, &path).map_err(write_err)?;
    tracing::info!(path = %path.display(), "wrote the default CNI config");
    let list = ConfList::from_json(value, &path)?;
    Ok((path, list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_file_in_name_order_wins_and_broken_ones_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("05-broken.conflist"), "{").expect("write");
        std::fs::write(
            dir.path().join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"ptp"}"#,
        )
        .expect("write");
        std::fs::write(dir.path().join("00-notes.txt"), "x").expect("write");
        let (path, list) = load_first(dir.path()).expect("load").expect("found");
        assert!(path.ends_with("10-a.conf"));
        assert_eq!(list.name, "a");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugin_type(0), "ptp");
    }

    #[test]
    fn default_is_written_once_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("net.d");
        let (path, list) = ensure_default(&conf, "peapod0", "10.244.0.0/24").expect("default");
        assert!(path.ends_with(DEFAULT_FILE));
        assert_eq!(list.name, DEFAULT_NETWORK);
        let types: Vec<_> = (0..list.plugins.len())
            .map(|i| list.plugin_type(i))
            .collect();
        assert_eq!(types, ["bridge", "portmap", "loopback"]);
        assert_eq!(
            list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.0.0/24"
        );
        // A second call finds the file rather than rewriting it.
        std::fs::write(
            &path,
            r#"{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"bridge"}]}"#,
        )
        .expect("write");
        let (_, again) = ensure_default(&conf, "peapod0", "10.244.0.0/24").expect("again");
        assert_eq!(again.name, "mine");
    }

    #[test]
    fn the_default_follows_the_nodes_range_but_other_configs_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("net.d");
        ensure_default(&conf, "peapod0", "10.244.0.0/24").expect("default");
        let (_, moved) = ensure_default(&conf, "peapod0", "10.244.3.0/24").expect("moved");
        assert_eq!(
            moved.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.3.0/24"
        );
        assert_eq!(moved.plugins[0]["ipMasq"], false);
        let reread = load_first(&conf).expect("load").expect("found").1;
        assert_eq!(reread, moved);
        std::fs::write(
            conf.join(DEFAULT_FILE),
            r#"{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"bridge","ipam":{"ranges":[[{"subnet":"10.1.0.0/24"}]]}}]}"#,
        )
        .expect("write");
        let (_, kept) = ensure_default(&conf, "peapod0", "10.244.3.0/24").expect("kept");
        assert_eq!(kept.name, "mine");
    }

    #[test]
    fn plugin_types_that_are_paths_are_rejected() {
        let v = json!({"name":"n","plugins":[{"type":"../../bin/sh"}]});
        assert!(ConfList::from_json(v, Path::new("x")).is_err());
        let v = json!({"name":"n","plugins":[]});
        assert!(ConfList::from_json(v, Path::new("x")).is_err());
        let v = json!({"plugins":[{"type":"bridge"}]});
        assert!(ConfList::from_json(v, Path::new("x")).is_err());
    }

    #[test]
    fn stdin_carries_name_version_prev_result_and_declared_capabilities_only() {
        let list =
            ConfList::from_json(default_conflist("peapod0", "10.244.0.0/24"), Path::new("x"))
                .expect("list");
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]),
        );
        let bridge = list.plugin_stdin(0, None, &caps);
        assert_eq!(bridge["name"], "peapod");
        assert_eq!(bridge["cniVersion"], CNI_VERSION);
        assert!(bridge.get("prevResult").is_none());
        assert!(bridge.get("runtimeConfig").is_none());
        let prev = json!({"cniVersion":"1.0.0","ips":[{"address":"10.244.0.2/24"}]});
        let portmap = list.plugin_stdin(1, Some(&prev), &caps);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
    }
}
