//! KubeletConfiguration files (YAML or JSON), with their Go durations.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = staticpods::parse_kubelet_config(s, Path::new("/etc/kubernetes/kubelet.yaml"));
});
