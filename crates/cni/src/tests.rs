//! The client's chaining, caching and error handling against a recording fake executor.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use super::*;

/// One recorded plugin run.
#[derive(Debug, Clone)]
struct Call {
    plugin: String,
    env: HashMap<String, String>,
    stdin: Value,
}

/// Plugins that echo `prevResult` (or, for `bridge`, hand out 10.244.0.7); `fail` makes a
/// plugin type fail for a command with a spec error object.
#[derive(Default)]
struct FakeExec {
    calls: Mutex<Vec<Call>>,
    fail: Mutex<Vec<(String, String)>>,
}

impl FakeExec {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
    fn fail(&self, plugin: &str, command: &str) {
        self.fail
            .lock()
            .expect("lock")
            .push((plugin.into(), command.into()));
    }
}

impl PluginExec for FakeExec {
    fn find(&self, plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf, ExecError> {
        if plugin_type == "missing" {
            return Err(ExecError::NotFound {
                plugin: plugin_type.into(),
                dirs: dirs.to_vec(),
            });
        }
        Ok(dirs.first().cloned().unwrap_or_default().join(plugin_type))
    }

    fn run(
        &self,
        path: &Path,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<PluginOutput, ExecError> {
        let plugin = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let env: HashMap<String, String> = env.iter().cloned().collect();
        let stdin: Value = serde_json::from_slice(stdin).expect("stdin is JSON");
        let command = env.get("CNI_COMMAND").cloned().unwrap_or_default();
        self.calls.lock().expect("lock").push(Call {
            plugin: plugin.clone(),
            env,
            stdin: stdin.clone(),
        });
        if self
            .fail
            .lock()
            .expect("lock")
            .contains(&(plugin.clone(), command.clone()))
        {
            return Ok(PluginOutput {
                success: false,
                stdout: br#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range is full"}"#.to_vec(),
                stderr: Vec::new(),
            });
        }
        let stdout = match (command.as_str(), plugin.as_str()) {
            ("ADD", "bridge") => serde_json::to_vec(&json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "sandbox": "/ns"}],
                "ips": [{"address": "10.244.0.7/24", "gateway": "10.244.0.1", "interface": 0}]
            }))
            .expect("json"),
            ("ADD", _) => serde_json::to_vec(&stdin["prevResult"]).expect("json"),
            _ => Vec::new(),
        };
        Ok(PluginOutput {
            success: true,
            stdout,
            stderr: Vec::new(),
        })
    }
}

struct Fixture {
    exec: Arc<FakeExec>,
    client: Client,
    list: ConfList,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(FakeExec::default());
    let client = Client::new(
        vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        dir.path().join("cni"),
        exec.clone(),
    );
    let list = ConfList::from_json(
        config::default_conflist("peapod0", "10.244.0.0/24"),
        Path::new("test"),
    )
    .expect("list");
    Fixture {
        exec,
        client,
        list,
        _dir: dir,
    }
}

fn rt() -> RuntimeConf {
    let mut caps = Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    RuntimeConf {
        container_id: "abc123".into(),
        netns: PathBuf::from("/run/netns/x"),
        if_name: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), "default".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        capability_args: caps,
    }
}

#[test]
fn add_chains_results_and_sets_the_cni_environment() {
    let f = fixture();
    let out = f.client.add(&f.list, &rt()).expect("add");
    assert_eq!(out.ips, vec!["10.244.0.7".parse::<IpAddr>().expect("ip")]);
    let calls = f.exec.calls();
    let plugins: Vec<_> = calls.iter().map(|c| c.plugin.as_str()).collect();
    assert_eq!(plugins, ["bridge", "portmap", "loopback"]);
    let env = &calls[0].env;
    assert_eq!(env["CNI_COMMAND"], "ADD");
    assert_eq!(env["CNI_CONTAINERID"], "abc123");
    assert_eq!(env["CNI_NETNS"], "/run/netns/x");
    assert_eq!(env["CNI_IFNAME"], "eth0");
    assert_eq!(env["CNI_PATH"], "/opt/cni/bin:/usr/lib/cni");
    assert_eq!(
        env["CNI_ARGS"],
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    );
    // The first plugin has no prevResult; the next ones get the chain's result so far.
    assert!(calls[0].stdin.get("prevResult").is_none());
    assert_eq!(
        calls[1].stdin["prevResult"]["ips"][0]["address"],
        "10.244.0.7/24"
    );
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(calls[2].stdin.get("runtimeConfig").is_none());
    let cached = f.client.cached_for("abc123");
    assert_eq!(cached.len(), 1);
    assert_eq!(
        result_ips(cached[0].result.as_ref().expect("result")),
        out.ips
    );
}

#[test]
fn del_runs_in_reverse_with_the_cached_config_and_result_then_forgets() {
    let f = fixture();
    f.client.add(&f.list, &rt()).expect("add");
    f.client.del("abc123").expect("del");
    let dels: Vec<_> = f
        .exec
        .calls()
        .into_iter()
        .filter(|c| c.env["CNI_COMMAND"] == "DEL")
        .collect();
    let plugins: Vec<_> = dels.iter().map(|c| c.plugin.as_str()).collect();
    assert_eq!(plugins, ["loopback", "portmap", "bridge"]);
    assert_eq!(
        dels[1].stdin["runtimeConfig"]["portMappings"][0]["containerPort"],
        80
    );
    assert_eq!(
        dels[2].stdin["prevResult"]["ips"][0]["address"],
        "10.244.0.7/24"
    );
    assert!(f.client.cached().is_empty());
    // Deleting again is a no-op.
    f.client.del("abc123").expect("second del");
}

#[test]
fn failed_add_reports_the_plugin_message_and_stays_cached_for_del() {
    let f = fixture();
    f.exec.fail("bridge", "ADD");
    let err = f.client.add(&f.list, &rt()).expect_err("add fails");
    let text = err.to_string();
    assert!(text.contains("type=\"bridge\""), "{text}");
    assert!(text.contains("failed to allocate: range is full"), "{text}");
    let cached = f.client.cached_for("abc123");
    assert_eq!(cached.len(), 1);
    assert!(cached[0].result.is_none());
    f.client
        .del("abc123")
        .expect("del of a half-made attachment");
    assert!(f.client.cached().is_empty());
}

#[test]
fn failed_del_keeps_going_and_keeps_the_record_for_a_retry() {
    let f = fixture();
    f.client.add(&f.list, &rt()).expect("add");
    f.exec.fail("portmap", "DEL");
    assert!(f.client.del("abc123").is_err());
    let dels = f
        .exec
        .calls()
        .into_iter()
        .filter(|c| c.env["CNI_COMMAND"] == "DEL")
        .count();
    assert_eq!(dels, 3, "bridge still ran after portmap failed");
    assert_eq!(f.client.cached().len(), 1);
}

#[test]
fn check_passes_the_cached_result_to_every_plugin() {
    let f = fixture();
    f.client.add(&f.list, &rt()).expect("add");
    let entry = f.client.cached_for("abc123").remove(0);
    f.client.check(&entry).expect("check");
    let checks: Vec<_> = f
        .exec
        .calls()
        .into_iter()
        .filter(|c| c.env["CNI_COMMAND"] == "CHECK")
        .collect();
    assert_eq!(checks.len(), 3);
    assert!(checks
        .iter()
        .all(|c| c.stdin["prevResult"]["ips"][0]["address"] == "10.244.0.7/24"));
}

#[test]
fn missing_plugins_and_hostile_ids_are_errors() {
    let f = fixture();
    let list = ConfList::from_json(
        json!({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"missing"}]}),
        Path::new("x"),
    )
    .expect("list");
    let err = f.client.add(&list, &rt()).expect_err("missing plugin");
    assert!(matches!(err, CniError::Exec { .. }), "{err}");
    let mut bad = rt();
    bad.container_id = "../../etc".into();
    assert!(matches!(
        f.client.add(&f.list, &bad),
        Err(CniError::BadContainerId(_))
    ));
}

#[test]
fn result_ips_reads_current_and_old_result_shapes() {
    let new = json!({"ips":[{"address":"10.244.0.3/24"},{"address":"fd00::3/64"}]});
    assert_eq!(result_ips(&new).len(), 2);
    let old = json!({"ip4":{"ip":"10.1.0.2/16"}});
    assert_eq!(
        result_ips(&old),
        vec!["10.1.0.2".parse::<IpAddr>().expect("ip")]
    );
    assert!(result_ips(&Value::Null).is_empty());
}

/// A client whose in-process network is the fake kernel of `builtin::tests`.
fn in_process_fixture() -> (Fixture, crate::builtin::tests::Fixture) {
    let mut f = fixture();
    let b = crate::builtin::tests::fixture();
    f.client = f.client.with_builtin(b.builtin.clone());
    (f, b)
}

fn in_process_rt(b: &crate::builtin::tests::Fixture, mappings: bool) -> RuntimeConf {
    let mut rt = rt();
    rt.netns = b.netns.clone();
    if !mappings {
        rt.capability_args = Map::new();
    }
    rt
}

#[test]
fn the_default_list_without_port_mappings_runs_no_plugin() {
    let (f, b) = in_process_fixture();
    let out = f
        .client
        .add_default(&f.list, &in_process_rt(&b, false))
        .expect("add");
    assert_eq!(out.ips, vec!["10.244.0.2".parse::<IpAddr>().expect("ip")]);
    assert!(f.exec.calls().is_empty(), "{:?}", f.exec.calls());
    let entry = f.client.cached_for("abc123").remove(0);
    assert_eq!(entry.made_by, MadeBy::InProcess);
    assert_eq!(entry.result.as_ref(), Some(&out.raw));
    let allocation = b.dir.path().join("networks/peapod/10.244.0.2");
    assert!(allocation.exists());

    f.client.del("abc123").expect("del");
    assert!(f.exec.calls().is_empty(), "{:?}", f.exec.calls());
    assert!(!allocation.exists());
    assert!(f.client.cached().is_empty());
    f.client.del_entry(&entry).expect("DEL again");
}

#[test]
fn port_mappings_chain_the_portmap_binary_on_the_in_process_result() {
    let (f, b) = in_process_fixture();
    let out = f
        .client
        .add_default(&f.list, &in_process_rt(&b, true))
        .expect("add");
    let calls = f.exec.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].plugin, "portmap");
    assert_eq!(calls[0].env["CNI_COMMAND"], "ADD");
    assert_eq!(
        calls[0].stdin["prevResult"]["ips"][0]["address"],
        "10.244.0.2/24"
    );
    assert_eq!(
        calls[0].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    // portmap passes its prevResult on.
    assert_eq!(out.raw, calls[0].stdin["prevResult"]);

    f.client.del("abc123").expect("del");
    let calls = f.exec.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (
            calls[1].plugin.as_str(),
            calls[1].env["CNI_COMMAND"].as_str()
        ),
        ("portmap", "DEL")
    );
    assert_eq!(calls[1].stdin["prevResult"], out.raw);
    assert!(!b.dir.path().join("networks/peapod/10.244.0.2").exists());
}

#[test]
fn other_lists_go_through_their_plugins() {
    let (f, b) = in_process_fixture();
    let mut conf = config::default_conflist("peapod0", "10.244.0.0/24");
    conf["plugins"][0]["mtu"] = json!(1400);
    let list = ConfList::from_json(conf, Path::new("x")).expect("list");
    f.client
        .add_default(&list, &in_process_rt(&b, false))
        .expect("add");
    let plugins: Vec<_> = f.exec.calls().into_iter().map(|c| c.plugin).collect();
    assert_eq!(plugins, ["bridge", "portmap", "loopback"]);
    assert_eq!(f.client.cached()[0].made_by, MadeBy::Plugins);
    assert!(b.links.calls().is_empty());
}

#[test]
fn a_crash_mid_add_is_released_the_way_it_was_being_made() {
    let (f, b) = in_process_fixture();
    // The record is on disk before anything is made: a failing (or crashing) ADD leaves
    // it without a result, and DEL from it alone releases the address taken so far.
    std::fs::create_dir_all(b.dir.path().join("networks/peapod")).expect("dir");
    let rt = in_process_rt(&b, true);
    let entry = f
        .client
        .record(&f.list, &rt, MadeBy::InProcess)
        .expect("record");
    crate::builtin::hostlocal::Store::new(&b.dir.path().join("networks"), "peapod")
        .lock()
        .expect("lock")
        .allocate(
            "abc123",
            "eth0",
            &crate::builtin::hostlocal::Range::of("10.244.0.0/24".parse().expect("cidr"))
                .expect("range"),
        )
        .expect("allocate");
    let reread = f.client.cached_for("abc123").remove(0);
    assert_eq!(reread, entry);
    assert_eq!(reread.result, None);
    f.client.del("abc123").expect("del");
    assert!(!b.dir.path().join("networks/peapod/10.244.0.2").exists());
    // portmap's DEL runs too (ADD may have reached it), with no prevResult.
    let calls = f.exec.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].plugin, "portmap");
    assert!(calls[0].stdin.get("prevResult").is_none());
    assert!(f.client.cached().is_empty());
}

#[test]
fn records_without_made_by_are_plugin_made() {
    let (f, b) = in_process_fixture();
    f.client
        .add_default(&f.list, &in_process_rt(&b, false))
        .expect("add");
    let entry = f.client.cached_for("abc123").remove(0);
    let mut old = serde_json::to_value(&entry).expect("json");
    assert_eq!(old["madeBy"], "inProcess");
    old.as_object_mut().expect("object").remove("madeBy");
    let old: CacheEntry = serde_json::from_value(old).expect("old record");
    assert_eq!(old.made_by, MadeBy::Plugins);
    // Released through the plugins (bridge and host-local release by id as we do).
    f.client.del_entry(&old).expect("del");
    let plugins: Vec<_> = f
        .exec
        .calls()
        .into_iter()
        .map(|c| format!("{} {}", c.plugin, c.env["CNI_COMMAND"]))
        .collect();
    assert_eq!(plugins, ["loopback DEL", "portmap DEL", "bridge DEL"]);
}
