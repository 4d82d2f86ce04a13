//! Field selectors (`fieldSelector=`), for every served kind: the first byte picks the kind.
#![no_main]

use api::selectors::FieldSelector;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let kinds = api::resources::all();
    let info = &kinds[usize::from(pick) % kinds.len()];
    let Ok(s) = std::str::from_utf8(rest) else {
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
