//! A CNI 1.0 client, the part of a container runtime that kubelet's pods get their network
//! from: it runs a network configuration list's plugins with `ADD`, `CHECK` and `DEL`
//! (chaining each result into the next plugin as `prevResult`), and keeps each attachment on
//! disk — written before `ADD` runs and completed after — so `DEL` can release it with the
//! very config `ADD` used, after a crash, or from `peapod reset` without any other state.
//! peapod's own default network is done in-process ([`builtin`]); each record says how its
//! attachment was made, so `DEL` releases it the same way.

pub mod builtin;
pub mod config;
pub mod exec;
pub mod netns;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use builtin::{Builtin, BuiltinError, DefaultNet};
pub use config::{ConfList, ConfigError};
pub use exec::{ExecError, PluginExec, PluginOutput, RealExec};

/// Errors of the client's operations.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The plugin ran and reported an error (its `msg` and `details`, as the spec's error
    /// object carries them).
    #[error("plugin type={plugin:?} name={network:?} failed ({command}): {message}")]
    Plugin {
        plugin: String,
        network: String,
        command: &'static str,
        message: String,
    },
    #[error("plugin type={plugin:?} name={network:?} failed ({command})")]
    Exec {
        plugin: String,
        network: String,
        command: &'static str,
        #[source]
        source: ExecError,
    },
    #[error("plugin type={plugin:?} ({command}) returned an unreadable result")]
    BadResult {
        plugin: String,
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("in-process network {network:?} for container {container_id} ({command})")]
    Builtin {
        container_id: String,
        network: String,
        command: &'static str,
        #[source]
        source: BuiltinError,
    },
    #[error("container id {0:?} is not usable in a file name")]
    BadContainerId(String),
    #[error("no cached result for container {container_id} on network {network}")]
    NotCached {
        container_id: String,
        network: String,
    },
    #[error("CNI cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Per-attachment arguments (the spec's runtime parameters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    /// Path of the network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// Interface name inside it (`CNI_IFNAME`, `eth0` for pods).
    pub if_name: String,
    /// `CNI_ARGS` pairs, e.g. `K8S_POD_NAME`.
    pub args: Vec<(String, String)>,
    /// `runtimeConfig` values by capability, e.g. `portMappings`.
    pub capability_args: Map<String, Value>,
}

/// How an attachment was made, hence how `DEL` releases it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MadeBy {
    /// Every plugin of the list ran as a binary (also records older than the field).
    #[default]
    Plugins,
    /// peapod's default list in-process ([`builtin`]): bridge, host-local and loopback
    /// here, `portmap` run as a binary when there are port mappings.
    InProcess,
}

/// An attachment as kept on disk, libcni's `cniCacheV1` record plus what a `DEL` needs to
/// run without any other configuration (the bin dirs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    pub netns: PathBuf,
    /// The whole conflist ADD ran with.
    pub config: Value,
    pub cni_args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
    pub bin_dirs: Vec<PathBuf>,
    /// Written before ADD starts, so a crash in the middle is released the right way.
    #[serde(default)]
    pub made_by: MadeBy,
    /// `None` while ADD runs or when it failed: the attachment may be half made.
    pub result: Option<Value>,
}

/// The final result of an ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct AddResult {
    pub ips: Vec<IpAddr>,
    pub raw: Value,
}

/// The addresses of a (final) CNI result: `ips[].address` for 0.3.0 and later, the
/// `ip4`/`ip6` objects of 0.1/0.2 results.
pub fn result_ips(result: &Value) -> Vec<IpAddr> {
    let strip = |s: &str| s.split('/').next().and_then(|ip| ip.parse::<IpAddr>().ok());
    let mut out: Vec<IpAddr> = result
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address").and_then(Value::as_str))
                .filter_map(strip)
                .collect()
        })
        .unwrap_or_default();
    for key in ["ip4", "ip6"] {
        if let Some(ip) = result
            .get(key)
            .and_then(|o| o.get("ip"))
            .and_then(Value::as_str)
            .and_then(strip)
        {
            out.push(ip);
        }
    }
    out
}

/// The CNI client: bin dirs to find plugins in, a cache dir for attachments, the seam
/// that runs plugins, and the in-process default network.
#[derive(Clone)]
pub struct Client {
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    exec: Arc<dyn PluginExec>,
    builtin: Builtin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Add,
    Check,
    Del,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
        }
    }
    fn lower(self) -> &'static str {
        match self {
            Command::Add => "add",
            Command::Check => "check",
            Command::Del => "delete",
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

impl Client {
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: PathBuf, exec: Arc<dyn PluginExec>) -> Self {
        Self {
            bin_dirs,
            cache_dir,
            exec,
            builtin: Builtin::real(),
        }
    }

    /// The same client with another in-process network (tests: a fake kernel, a temporary
    /// host-local data dir).
    pub fn with_builtin(mut self, builtin: Builtin) -> Self {
        self.builtin = builtin;
        self
    }

    fn results_dir(&self) -> PathBuf {
        self.cache_dir.join("results")
    }

    fn cache_path(&self, network: &str, container_id: &str, if_name: &str) -> PathBuf {
        self.results_dir()
            .join(format!("{network}-{container_id}-{if_name}"))
    }

    fn write_cache(&self, entry: &CacheEntry) -> Result<(), CniError> {
        let path = self.cache_path(&entry.network_name, &entry.container_id, &entry.if_name);
        let cache_err = |source| CniError::Cache {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(self.results_dir()).map_err(cache_err)?;
        let data = serde_json::to_vec(entry).map_err(|e| cache_err(std::io::Error::other(e)))?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        std::fs::write(&tmp, data).map_err(cache_err)?;
        std::fs::rename(&tmp, &path).map_err(cache_err)
    }

    fn remove_cache(&self, entry: &CacheEntry) -> Result<(), CniError> {
        let path = self.cache_path(&entry.network_name, &entry.container_id, &entry.if_name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CniError::Cache { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Every attachment on disk (unreadable records are logged and skipped).
    pub fn cached(&self) -> Vec<CacheEntry> {
        self.read_cache(|_| true)
    }

    /// The attachments of one container; only its own records are read (file names are
    /// `<network>-<container id>-<ifname>`), so this stays cheap with many pods.
    pub fn cached_for(&self, container_id: &str) -> Vec<CacheEntry> {
        let needle = format!("-{container_id}-");
        self.read_cache(|name| name.contains(&needle))
            .into_iter()
            .filter(|e| e.container_id == container_id)
            .collect()
    }

    fn read_cache(&self, wanted: impl Fn(&str) -> bool) -> Vec<CacheEntry> {
        let Ok(dir) = std::fs::read_dir(self.results_dir()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in dir.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") {
                continue;
            }
            if !wanted(&name) {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|d| serde_json::from_slice::<CacheEntry>(&d).map_err(|e| e.to_string()))
            {
                Ok(e) => out.push(e),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "unreadable CNI cache entry")
                }
            }
        }
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        out
    }

    fn env(
        &self,
        command: Command,
        container_id: &str,
        netns: &Path,
        if_name: &str,
        args: &[(String, String)],
        bin_dirs: &[PathBuf],
    ) -> Vec<(String, String)> {
        let cni_args = args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let path = bin_dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        vec![
            ("CNI_COMMAND".into(), command.as_str().into()),
            ("CNI_CONTAINERID".into(), container_id.into()),
            ("CNI_NETNS".into(), netns.to_string_lossy().into_owned()),
            ("CNI_IFNAME".into(), if_name.into()),
            ("CNI_ARGS".into(), cni_args),
            ("CNI_PATH".into(), path),
        ]
    }

    /// Runs one plugin of `list`; returns its stdout parsed (`Null` when it printed nothing,
    /// as DEL and CHECK may).
    #[allow(
        clippy::too_many_arguments,
        reason = "the spec's parameters, passed through"
    )]
    fn invoke(
        &self,
        command: Command,
        list: &ConfList,
        index: usize,
        prev: Option<&Value>,
        entry: &CacheEntry,
        bin_dirs: &[PathBuf],
    ) -> Result<Value, CniError> {
        let plugin = list.plugin_type(index).to_string();
        let network = list.name.clone();
        let exec_err = |source| CniError::Exec {
            plugin: plugin.clone(),
            network: network.clone(),
            command: command.lower(),
            source,
        };
        let path = self.exec.find(&plugin, bin_dirs).map_err(exec_err)?;
        let stdin = list.plugin_stdin(index, prev, &entry.capability_args);
        let stdin = serde_json::to_vec(&stdin).unwrap_or_default();
        let env = self.env(
            command,
            &entry.container_id,
            &entry.netns,
            &entry.if_name,
            &entry.cni_args,
            bin_dirs,
        );
        let out = self.exec.run(&path, &env, &stdin).map_err(exec_err)?;
        if !out.success {
            return Err(CniError::Plugin {
                plugin,
                network,
                command: command.lower(),
                message: plugin_message(&out),
            });
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|source| CniError::BadResult {
            plugin,
            command: command.lower(),
            source,
        })
    }

    /// The record of a new attachment, checked to be usable as a file name, and written.
    fn record(
        &self,
        list: &ConfList,
        rt: &RuntimeConf,
        made_by: MadeBy,
    ) -> Result<CacheEntry, CniError> {
        if !valid_name(&rt.container_id) || !valid_name(&rt.if_name) {
            return Err(CniError::BadContainerId(rt.container_id.clone()));
        }
        let entry = CacheEntry {
            kind: "cniCacheV1".into(),
            container_id: rt.container_id.clone(),
            if_name: rt.if_name.clone(),
            network_name: list.name.clone(),
            netns: rt.netns.clone(),
            config: list.to_json(),
            cni_args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            bin_dirs: self.bin_dirs.clone(),
            made_by,
            result: None,
        };
        if !valid_name(&entry.network_name) {
            return Err(CniError::BadContainerId(entry.network_name));
        }
        self.write_cache(&entry)?;
        Ok(entry)
    }

    /// Records the finished attachment.
    fn complete(&self, mut entry: CacheEntry, raw: Value) -> Result<AddResult, CniError> {
        entry.result = Some(raw.clone());
        self.write_cache(&entry)?;
        Ok(AddResult {
            ips: result_ips(&raw),
            raw,
        })
    }

    /// Attaches the container to `list`'s network. The attachment is recorded before the
    /// first plugin runs, so even a crash in the middle leaves enough on disk for `del`.
    /// On error the record stays: the caller runs `del` to release what was made.
    pub fn add(&self, list: &ConfList, rt: &RuntimeConf) -> Result<AddResult, CniError> {
        let entry = self.record(list, rt, MadeBy::Plugins)?;
        let mut prev: Option<Value> = None;
        for i in 0..list.plugins.len() {
            let out = self.invoke(Command::Add, list, i, prev.as_ref(), &entry, &self.bin_dirs)?;
            if !out.is_null() {
                prev = Some(out);
            }
        }
        self.complete(entry, prev.unwrap_or(Value::Null))
    }

    /// [`Client::add`] for peapod's default network: when `list` is exactly the default
    /// ([`DefaultNet::of`]) the attachment is made in-process, with `portmap` still run as a
    /// binary (chained on the in-process result) when the pod maps ports; any other list
    /// goes through its plugins. Recorded before anything is made, as `add` does.
    pub fn add_default(&self, list: &ConfList, rt: &RuntimeConf) -> Result<AddResult, CniError> {
        let Some(net) = DefaultNet::of(list) else {
            return self.add(list, rt);
        };
        let entry = self.record(list, rt, MadeBy::InProcess)?;
        let mut result = self
            .builtin
            .add(&net, &rt.container_id, &rt.if_name, &rt.netns)
            .map_err(|source| CniError::Builtin {
                container_id: rt.container_id.clone(),
                network: net.name.clone(),
                command: Command::Add.lower(),
                source,
            })?;
        if let Some(portmap) = portmap_to_run(list, &entry) {
            let out = self.invoke(
                Command::Add,
                list,
                portmap,
                Some(&result),
                &entry,
                &self.bin_dirs,
            )?;
            if !out.is_null() {
                result = out;
            }
        }
        self.complete(entry, result)
    }

    /// Verifies a finished attachment with CHECK (skipped when the list disables it or its
    /// version predates CHECK).
    pub fn check(&self, entry: &CacheEntry) -> Result<(), CniError> {
        let list =
            ConfList::from_json(entry.config.clone(), Path::new("<cache>")).map_err(|e| {
                CniError::Cache {
                    path: self.results_dir(),
                    source: std::io::Error::other(e),
                }
            })?;
        let Some(result) = entry.result.as_ref() else {
            return Err(CniError::NotCached {
                container_id: entry.container_id.clone(),
                network: entry.network_name.clone(),
            });
        };
        // CHECK arrived in spec 0.4.0.
        let before_check = matches!(
            list.cni_version.as_str(),
            "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1"
        );
        if list.disable_check || before_check {
            return Ok(());
        }
        for i in 0..list.plugins.len() {
            self.invoke(
                Command::Check,
                &list,
                i,
                Some(result),
                entry,
                &entry.bin_dirs,
            )?;
        }
        Ok(())
    }

    /// Releases one attachment: DEL through the plugins in reverse order with the cached
    /// result as `prevResult`, every plugin even when one fails (so one broken plugin does
    /// not leak what the others hold); the record goes only when all succeeded, so a failed
    /// DEL is retried later.
    pub fn del_entry(&self, entry: &CacheEntry) -> Result<(), CniError> {
        let list =
            ConfList::from_json(entry.config.clone(), Path::new("<cache>")).map_err(|e| {
                CniError::Cache {
                    path: self.results_dir(),
                    source: std::io::Error::other(e),
                }
            })?;
        let bin_dirs = if entry.bin_dirs.is_empty() {
            &self.bin_dirs
        } else {
            &entry.bin_dirs
        };
        if entry.made_by == MadeBy::InProcess {
            return self.del_in_process(entry, &list, bin_dirs);
        }
        let mut first_err = None;
        for i in (0..list.plugins.len()).rev() {
            if let Err(err) = self.invoke(
                Command::Del,
                &list,
                i,
                entry.result.as_ref(),
                entry,
                bin_dirs,
            ) {
                tracing::warn!(container = %entry.container_id, error = %err, "CNI DEL failed");
                first_err.get_or_insert(err);
            }
        }
        match first_err {
            Some(err) => Err(err),
            None => self.remove_cache(entry),
        }
    }

    /// DEL of an in-process attachment: `portmap`'s (a binary) when ADD had port mappings
    /// to give it, then the in-process bridge, host-local and loopback. Every step runs
    /// even when one fails; the record goes only when all succeeded.
    fn del_in_process(
        &self,
        entry: &CacheEntry,
        list: &ConfList,
        bin_dirs: &[PathBuf],
    ) -> Result<(), CniError> {
        let mut first_err = None;
        if let Some(portmap) = portmap_to_run(list, entry) {
            if let Err(err) = self.invoke(
                Command::Del,
                list,
                portmap,
                entry.result.as_ref(),
                entry,
                bin_dirs,
            ) {
                tracing::warn!(container = %entry.container_id, error = %err, "CNI DEL failed");
                first_err.get_or_insert(err);
            }
        }
        if let Err(source) = self.builtin.del(
            &entry.network_name,
            &entry.container_id,
            &entry.if_name,
            &entry.netns,
        ) {
            let err = CniError::Builtin {
                container_id: entry.container_id.clone(),
                network: entry.network_name.clone(),
                command: Command::Del.lower(),
                source,
            };
            tracing::warn!(container = %entry.container_id, error = %err, "CNI DEL failed");
            first_err.get_or_insert(err);
        }
        match first_err {
            Some(err) => Err(err),
            None => self.remove_cache(entry),
        }
    }

    /// Releases every attachment of a container (a no-op when there is none).
    pub fn del(&self, container_id: &str) -> Result<(), CniError> {
        let mut first_err = None;
        for entry in self.cached_for(container_id) {
            if let Err(err) = self.del_entry(&entry) {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The `portmap` plugin of an in-process attachment, when it has mappings to act on:
/// without any, its ADD only passes the result on and its DEL finds nothing of its own.
fn portmap_to_run(list: &ConfList, entry: &CacheEntry) -> Option<usize> {
    let has_mappings = entry
        .capability_args
        .get("portMappings")
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty());
    (0..list.plugins.len())
        .find(|&i| list.plugin_type(i) == "portmap")
        .filter(|_| has_mappings)
}

/// The message of a failed plugin: the spec's error object (`msg`, `details`) when stdout
/// holds one, else whatever it printed.
fn plugin_message(out: &PluginOutput) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
        let msg = v.get("msg").and_then(Value::as_str).unwrap_or_default();
        let details = v.get("details").and_then(Value::as_str).unwrap_or_default();
        match (msg.is_empty(), details.is_empty()) {
            (false, false) => return format!("{msg}: {details}"),
            (false, true) => return msg.to_string(),
            (true, false) => return details.to_string(),
            (true, true) => {}
        }
    }
    let text = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(text).trim().to_string();
    if text.is_empty() {
        "plugin exited with an error and no message".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
