//! Static pod manifests (YAML or JSON files under `staticPodPath`) turned into pods.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = staticpods::pod_from_manifest(
        data,
        Path::new("/etc/kubernetes/manifests/web.yaml"),
        "node-1",
    );
});
