//! DNS query packets answered by the cluster DNS from a small cluster snapshot, over TCP and
//! over UDP (where an answer never exceeds the largest payload size).
#![no_main]

use std::sync::{Arc, OnceLock};

use dns::Snapshot;
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let service = serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        });
        let headless = serde_json::json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
        });
        let external = serde_json::json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"},
        });
        let slice = serde_json::json!({
            "metadata": {"name": "db-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "hostname": "db-0",
                           "conditions": {"ready": true}}],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        });
        let pod = serde_json::json!({
            "metadata": {"name": "db-0", "namespace": "default"},
            "spec": {"containers": [], "hostname": "db-0", "subdomain": "db"},
            "status": {"podIP": "10.244.0.5"},
        });
        Snapshot::new(
            [parse(service), parse(headless), parse(external)].map(Arc::new),
            [Arc::new(parse(slice))],
            [Arc::new(parse(pod))],
        )
    })
}

fn parse<T: serde::de::DeserializeOwned + Default>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let _ = dns::answer(snapshot(), "cluster.local", 30, data);
    if let Some(resp) = dns::answer_udp(snapshot(), "cluster.local", 30, data) {
        assert!(resp.len() <= 4096, "UDP answer of {} bytes", resp.len());
    }
});
