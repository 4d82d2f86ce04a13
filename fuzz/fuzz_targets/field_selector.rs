//! Field selectors (`fieldSelector=`) of every served kind: the first line names the kind, the
//! rest is the selector.
#![no_main]

use api::selectors::FieldSelector;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((kind, s)) = text.split_once('\n') else {
        return;
    };
    let Some(info) = api::resources::lookup_any_kind(kind) else {
        return;
    };
    let obj = json!({
        "metadata": {"name": "web-0", "namespace": "default"},
        "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
        "status": {"phase": "Running", "podIP": "10.0.0.2"},
    });
    if let Ok(sel) = FieldSelector::parse_for(info, s) {
        let _ = sel.matches(&obj);
        let _ = sel.exact("metadata.name");
        let _ = sel.is_empty();
    }
    let _ = FieldSelector::parse(info.kind, s);
});
